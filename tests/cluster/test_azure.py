"""profiles/azure: job plan by --dry-run, and a storage round trip against azurite.

There is no Azure Batch emulator, so the Batch executor itself is not exercised: the dry run checks
the plan Snakemake would submit (every job's files in Blob storage, a chunk's stages grouped),
and a real run with the local executor moves the session's movies through Blob storage
(snakemake-storage-plugin-azure against azurite) and checks what comes back. The per-movie
files of a chunk job are not declared outputs (emproc.chunks), so the storage plugin carries
only the chunk manifests: without a shared file system they stay where the job ran
(docs/profiles.md).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from .conftest import MOVIES, run_workflow

pytestmark = pytest.mark.cluster

CONTAINER = "emproc-test"


@pytest.fixture()
def azure_run(azurite: str, simulated_config: Path, tmp_path: Path):
    """A work dir with the session (relative paths) uploaded to azurite, and the run env."""
    blob = pytest.importorskip("azure.storage.blob")
    settings = yaml.safe_load(simulated_config.read_text())
    session = Path(settings["session"]["session_dir"])
    work = tmp_path / "azure"
    shutil.copytree(session, work / "session")
    # Relative paths: with a default storage provider every path maps to prefix/path.
    settings["session"]["session_dir"] = "session"
    settings["outputs"]["dir"] = "processed"
    gain = settings["microscope"].get("gain_reference")
    if gain:
        settings["microscope"]["gain_reference"] = str(Path("session") / Path(gain).name)
    (work / "config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))

    prefix = f"run{tmp_path.name[-8:]}".replace("_", "")
    service = blob.BlobServiceClient.from_connection_string(azurite)
    container = service.get_container_client(CONTAINER)
    if not container.exists():
        container.create_container()
    for path in (work / "session").rglob("*"):
        if path.is_file():
            name = f"{prefix}/{path.relative_to(work)}"
            container.upload_blob(name, path.read_bytes(), overwrite=True)
    env = {
        "AZURITE_CONNECTION_STRING": azurite,
        "AZ_BLOB_ACCOUNT_NAME": "devstoreaccount1",
        "EMPROC_AZURE_PREFIX": f"az://{CONTAINER}/{prefix}",
        # Site values the profile reads; dummies, the dry run never contacts Batch.
        "AZ_BATCH_ACCOUNT_URL": "https://emproc.westeurope.batch.azure.com",
        "EMPROC_AZURE_RESOURCE_GROUP": "emproc-test",
        "EMPROC_AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    }
    return work / "config.yaml", env, container, prefix


def test_azure_dry_run_plans_grouped_jobs_on_blob_storage(azure_run):
    config, env, _, prefix = azure_run
    result = run_workflow(config, "azure", "--dry-run", env=env, timeout_s=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    table = log.split("Job stats:", 1)[1]
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}
    for rule in ("import_movies", "motion_correct", "ctf_estimate"):
        assert counts.get(rule) == 1, counts  # one chunk holds the session's movies
    # One group job carries every per-movie stage of the chunk.
    assert log.count("Group job per_chunk") == 1, log[-5000:]
    assert f"az://{CONTAINER}/{prefix}/processed/Chunks/00001/import.json" in log


def test_azure_storage_writes_results_to_blob_storage(azure_run):
    config, env, container, prefix = azure_run
    result = run_workflow(
        config, "azure", "--executor", "local", "--cores", "1", "--until", "config_used",
        env=env, timeout_s=300,
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    stored = container.download_blob(f"{prefix}/processed/config_used.yaml").readall()
    written = yaml.safe_load(stored)
    assert written["session"]["session_dir"] == "session"
    assert written["microscope"] == yaml.safe_load(config.read_text())["microscope"]


def test_azure_storage_round_trip_through_azurite(azure_run, local_reference: Path):
    config, env, container, prefix = azure_run
    # Local executor, same profile otherwise: inputs come from and outputs go to Blob storage.
    result = run_workflow(
        config, "azure", "--executor", "local", "--cores", "2", "--until", "import_movies",
        env=env, timeout_s=300,
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    # the chunk manifest (a declared output) went to Blob storage, naming both movies
    blob = f"{prefix}/processed/Chunks/00001/import.json"
    manifest = json.loads(container.download_blob(blob).readall())
    assert len(manifest["succeeded"]) == MOVIES and not manifest["failed"], manifest
    # the movies came from Blob storage; the per-movie metadata is where the job ran (next
    # to the job's local copy of its manifest)
    work = config.parent
    for movie in manifest["succeeded"]:
        (path,) = work.glob(f"**/processed/Import/{movie}.json")
        metadata = json.loads(path.read_text())
        expected = json.loads((local_reference / "Import" / f"{movie}.json").read_text())
        # Paths differ (storage copies vs local files); every measured value must not.
        paths = ("gain_reference", "defect_map")
        assert {
            k: v for k, v in metadata.items() if not k.endswith("_path") and k not in paths
        } == {k: v for k, v in expected.items() if not k.endswith("_path") and k not in paths}
