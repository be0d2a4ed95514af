"""Reference-free 2D classification: iterative alignment to K class averages.

Each iteration:
1. every particle, multiplied by its CTF, is polar-resampled about its current centre and
   correlated with every reference over all in-plane angles at once (FFT along the angle):
   cc = <particle, CTF A_k>, the likelihood's cross term for the CTF-free reference A_k;
2. class probabilities follow a Gaussian noise model,
   log p(k) = (cc - |CTF A_k|^2 / 2) / sigma^2 + log(class prior), |CTF A_k|^2 from the
   particle's rotationally averaged CTF^2 and the reference's shell power, maximised over
   rotations (soft, ML-like) or the best class taken (hard). Scoring with |A_k|^2 instead
   charges sharp references for power the CTF removed from every particle, so blurred
   classes win and grow into mixed "attractor" classes (measured: docs/particles.md);
   the references scored against can be low-passed (`score_lowpass_angstrom`): beyond it
   the (FRC-filtered) averages hold mostly noise, including each member's own, which
   ties particles to the class they are in rather than to the shape they are;
3. the translation is refined by FFT cross-correlation with the best class rotated to the
   particle (|shift| <= max_shift from the box centre);
4. class averages are CTF-corrected sums of the aligned particles (phase flipped, and Wiener:
   sum(|CTF| x) / (sum(CTF^2) + c) with rotationally averaged CTF^2), filtered by their
   half-set FRC, masked and re-centred on their centre of mass;
5. a class holding more than `split_ratio` x the mean class size is split in two along the
   first principal component of its aligned members, replacing the emptiest class
   (`emproc.classify.split`); not in the last `final_iterations`, so classes settle.
Initial classes come from k-means on rotation-invariant features (the magnitudes of the
angular Fourier components of each ring), so no class starts as a rotational blur.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
from scipy.cluster.vq import kmeans2

from emproc.classify import align
from emproc.classify.split import bisect_members, classes_to_split
from emproc.ctf.model import ctf_2d

logger = logging.getLogger(__name__)

CHUNK = 512  # particles per vectorised block: bounds the (chunk, k, angles) arrays


MIN_PARTICLES_PER_CLASS = 5


class ClassificationError(ValueError):
    """The particle stack or parameters cannot be classified."""


@dataclass(frozen=True)
class Class2DParams:
    number_of_classes: int = 20
    iterations: int = 20
    mask_diameter_angstrom: float | None = None  # default: 80 % of the box
    angular_step_deg: float = 5.0
    max_shift_angstrom: float | None = None  # default: 15 % of the box
    assignment: str = "soft"  # soft (ML-like) | hard
    ctf_correction: str = "wiener"  # wiener | phase_flip | none
    images_phase_flipped: bool = False  # extraction already flipped them
    wiener_constant: float = 0.1  # fraction of the summed weight added to sum(CTF^2)
    centre_references: bool = True
    fixed_label_iterations: int = 2  # first iterations keep the k-means classes
    split_ratio: float | None = 2.0  # split classes above this x the mean size (None: never)
    max_splits_per_iteration: int = 2
    final_iterations: int = 5  # last iterations: no splitting, the classes settle
    score_lowpass_angstrom: float | None = None  # scoring references low-passed here
    seed: int = 0

    def __post_init__(self) -> None:
        if self.number_of_classes < 1 or self.iterations < 1:
            raise ClassificationError("number_of_classes and iterations must be >= 1")
        if self.assignment not in ("soft", "hard"):
            raise ClassificationError(f"assignment must be soft or hard, not {self.assignment!r}")
        if self.ctf_correction not in ("wiener", "phase_flip", "none"):
            raise ClassificationError(
                f"ctf_correction must be wiener, phase_flip or none, not {self.ctf_correction!r}"
            )


@dataclass(frozen=True, eq=False)
class ParticleCtfs:
    """Per-particle CTF parameters (arrays of length n; Angstrom, degrees, kV, mm)."""

    defocus_u_angstrom: np.ndarray
    defocus_v_angstrom: np.ndarray
    astigmatism_angle_deg: np.ndarray
    voltage_kv: np.ndarray
    spherical_aberration_mm: np.ndarray
    amplitude_contrast: np.ndarray
    phase_shift_deg: np.ndarray

    def rows(self) -> np.ndarray:
        return np.stack(
            [np.asarray(getattr(self, name), dtype=float) for name in self.__dataclass_fields__],
            axis=1,
        )


@dataclass(frozen=True, eq=False)
class Class2DResult:
    class_averages: np.ndarray  # (k, size, size) float32, particles white
    class_number: np.ndarray  # (n,) 1-based, most probable class
    psi_deg: np.ndarray  # (n,) in-plane angle of the particle relative to its class
    shift_xy_px: np.ndarray  # (n, 2) particle centre minus box centre
    max_probability: np.ndarray  # (n,)
    class_distribution: np.ndarray  # (k,) summed probabilities / n
    estimated_resolution_angstrom: np.ndarray  # (k,) half-set FRC = 0.143
    accuracy_rotations_deg: np.ndarray  # (k,)
    accuracy_translations_angstrom: np.ndarray  # (k,)
    frc: np.ndarray  # (k, shells)
    pixel_size_angstrom: float
    mask_radius_px: float
    noise_variance: float
    changes_per_iteration: list[float] = field(default_factory=list)


@dataclass
class _Prepared:
    align_images: np.ndarray  # phase flipped (white): initial centring and features
    score_images: np.ndarray  # CTF-multiplied: <score image, A> = <particle, CTF A>
    sum_images: np.ndarray  # what is averaged (|CTF|-weighted for Wiener)
    ctf_squared: np.ndarray  # (n_groups, shells) rotationally averaged CTF^2 (or ones)
    ctf_group: np.ndarray  # (n,) row of ctf_squared per particle
    wiener: bool  # class sums are divided by summed CTF^2 (else by the particle count)


def _prepare(
    stack: np.ndarray,
    pixel_size: float,
    params: Class2DParams,
    ctfs: ParticleCtfs | None,
    workers: int,
) -> _Prepared:
    count, size, _ = stack.shape
    shells = align.radial_index(size)
    n_shells = size // 2 + 1
    if ctfs is None or params.ctf_correction == "none":
        ones = np.ones((1, n_shells))
        return _Prepared(stack, stack, stack, ones, np.zeros(count, dtype=int), False)
    rows, group = np.unique(ctfs.rows(), axis=0, return_inverse=True)
    group = group.reshape(-1)
    spectra = scipy.fft.rfft2(stack, axes=(-2, -1), workers=workers)
    flipped = np.empty_like(spectra)
    weighted = np.empty_like(spectra)
    ctf_squared = np.zeros((len(rows), n_shells))
    counts = np.bincount(shells.ravel(), minlength=n_shells)[:n_shells]
    inside = shells < n_shells
    for index, row in enumerate(rows):
        ctf = ctf_2d(
            (size, size), pixel_size, *row[:3], *row[3:6], phase_shift_deg=row[6], rfft=True
        )
        members = group == index
        sign = 1.0 if params.images_phase_flipped else np.sign(ctf)
        flipped[members] = spectra[members] * sign
        weighted[members] = flipped[members] * np.abs(ctf)
        ctf_squared[index] = np.bincount(
            shells[inside], weights=(ctf**2)[inside], minlength=n_shells
        )[:n_shells] / np.maximum(counts, 1)

    def real(values: np.ndarray) -> np.ndarray:
        return scipy.fft.irfft2(values, s=(size, size), axes=(-2, -1), workers=workers).astype(
            np.float32
        )

    align_images, score_images = real(flipped), real(weighted)
    del spectra, flipped, weighted
    if params.ctf_correction == "phase_flip":
        return _Prepared(align_images, score_images, align_images, ctf_squared, group, False)
    return _Prepared(align_images, score_images, score_images, ctf_squared, group, True)


def _shell_power(images: np.ndarray, workers: int) -> np.ndarray:
    """(n, shells) power per Fourier shell, scaled so sum over shells = sum of pixels^2."""
    size = images.shape[-1]
    shells = align.radial_index(size)
    n_shells = size // 2 + 1
    power = np.abs(scipy.fft.rfft2(images, axes=(-2, -1), workers=workers)) ** 2
    # rfft keeps half the plane: columns other than 0 (and size/2) stand for two coefficients
    column_weight = np.full(shells.shape[1], 2.0)
    column_weight[0] = 1.0
    if size % 2 == 0:
        column_weight[-1] = 1.0
    power *= column_weight[None, None, :] / size**2
    index = np.minimum(shells, n_shells - 1).ravel()
    return np.stack([np.bincount(index, p.ravel(), n_shells) for p in power])


def _rotational_average(image: np.ndarray) -> np.ndarray:
    size = image.shape[-1]
    coordinates = np.arange(size) - align.image_centre(size)
    radius = np.rint(np.hypot(coordinates[None, :], coordinates[:, None])).astype(int)
    profile = np.bincount(radius.ravel(), weights=image.ravel()) / np.bincount(radius.ravel())
    return profile[radius]


def _invariant_features(polar: np.ndarray, max_order: int = 8) -> np.ndarray:
    """Rotation-invariant description: |angular Fourier coefficients| per ring."""
    magnitudes = np.abs(np.fft.rfft(polar, axis=-1)[:, :, : max_order + 1])
    return magnitudes.reshape(len(polar), -1)


def _initial_labels(
    features: np.ndarray, number_of_classes: int, rng: np.random.Generator
) -> np.ndarray:
    centred = features - features.mean(axis=0)
    centred /= centred.std(axis=0) + 1e-9
    components = min(20, centred.shape[1])
    # principal axes from the (features x features) covariance: cheaper than an SVD of the data
    sample = centred[: min(len(centred), 5000)]
    _, vectors = np.linalg.eigh(sample.T @ sample)
    reduced = centred @ vectors[:, ::-1][:, :components]
    if number_of_classes >= len(reduced):
        return np.arange(len(reduced)) % number_of_classes
    _, labels = kmeans2(reduced, number_of_classes, minit="++", seed=rng, iter=30)
    return labels


def _circular_std_deg(probabilities: np.ndarray, angles_rad: np.ndarray) -> np.ndarray:
    resultant = np.abs((probabilities * np.exp(1j * angles_rad)).sum(axis=-1))
    resultant = np.clip(resultant, 1e-12, 1.0)
    return np.rad2deg(np.sqrt(-2.0 * np.log(resultant)))


def _frc(first: np.ndarray, second: np.ndarray, shells: np.ndarray, n_shells: int) -> np.ndarray:
    inside = shells < n_shells
    index = shells[inside]
    cross = np.bincount(index, (first * np.conj(second)).real[inside], n_shells)
    power_first = np.bincount(index, (np.abs(first) ** 2)[inside], n_shells)
    power_second = np.bincount(index, (np.abs(second) ** 2)[inside], n_shells)
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = cross / np.sqrt(power_first * power_second)
    return np.nan_to_num(frc)


def resolution_from_frc(frc: np.ndarray, size: int, pixel_size: float, threshold: float) -> float:
    """Resolution (Angstrom) where the FRC first drops below `threshold` (shell 1 onwards)."""
    below = np.flatnonzero(frc[1:] < threshold)
    shell = (below[0] + 1) if below.size else len(frc) - 1
    shell = max(int(shell), 1)
    return float(size * pixel_size / shell)


def classify_2d(
    stack: np.ndarray,
    pixel_size_angstrom: float,
    params: Class2DParams = Class2DParams(),
    ctfs: ParticleCtfs | None = None,
    workers: int = 1,
) -> Class2DResult:
    """Classify a stack of white-on-black, background-normalised particle images."""
    if stack.ndim != 3 or stack.shape[1] != stack.shape[2]:
        raise ClassificationError(f"expected a stack of square images, got {stack.shape}")
    count, size, _ = stack.shape
    # fewer than a handful of particles per class is no average: fewer classes instead
    k = max(1, min(params.number_of_classes, count // MIN_PARTICLES_PER_CLASS))
    if count < 2:
        raise ClassificationError(f"need at least 2 particles, got {count}")
    if not np.all(np.isfinite(stack)):
        raise ClassificationError("particle stack contains NaN or infinite values")
    rng = np.random.default_rng(params.seed)
    pixel = pixel_size_angstrom
    mask_radius = (
        0.4 * size
        if params.mask_diameter_angstrom is None
        else 0.5 * params.mask_diameter_angstrom / pixel
    )
    mask_radius = min(mask_radius, size / 2 - 2)
    max_shift = (
        0.15 * size if params.max_shift_angstrom is None else params.max_shift_angstrom / pixel
    )
    grid = align.make_polar_grid(mask_radius, params.angular_step_deg)
    n_angles = len(grid.angles_rad)
    step_deg = grid.angular_step_deg
    centre = align.image_centre(size)
    mask = align.soft_circular_mask(size, mask_radius)
    shells = align.radial_index(size)
    n_shells = size // 2 + 1

    prepared = _prepare(stack.astype(np.float32), pixel, params, ctfs, workers)
    images = prepared.align_images

    # first centres: translation against the rotational average of the whole stack
    blob = (_rotational_average(images.mean(axis=0)) * mask)[None]
    shifts = np.zeros((count, 2))
    for start in range(0, count, CHUNK):
        block = slice(start, start + CHUNK)
        shifts[block], _, _ = align.translation_search(
            images[block], np.broadcast_to(blob, images[block].shape), max_shift, workers
        )

    def polar_of(block: slice, source: np.ndarray) -> np.ndarray:
        return align.polar_resample(source[block], centre + shifts[block], grid)

    polar_all = np.concatenate(
        [polar_of(slice(s, s + CHUNK), images) for s in range(0, count, CHUNK)]
    )
    labels = _initial_labels(_invariant_features(polar_all), k, rng)
    del polar_all

    # seed references: a member of each initial class, refined by the fixed-label iterations
    references = np.zeros((k, size, size), dtype=np.float32)
    for label in range(k):
        members = np.flatnonzero(labels == label)
        pick = members[0] if members.size else rng.integers(count)
        references[label] = (
            align.transform_images(images[pick : pick + 1], np.zeros(1), shifts[pick : pick + 1])[0]
            * mask
        )
    # (2, k, size, size): the references each half-set is scored against (see below)
    scoring_references = np.stack([references, references])
    prior = np.full(k, 1.0 / k)
    noise_variance = 1.0
    previous_class = np.full(count, -1)
    changes: list[float] = []
    psi_best = np.zeros(count)
    best_class = np.zeros(count, dtype=int)
    max_probability = np.ones(count)
    rotation_std = np.zeros(count)
    translation_std = np.zeros(count)
    frc_all = np.zeros((k, n_shells))
    resolution = np.full(k, size * pixel)
    class_weight = np.zeros(k)

    for iteration in range(params.iterations):
        fixed = iteration < params.fixed_label_iterations
        reference_spectra = [
            align.polar_spectra(
                align.polar_resample(scoring_references[h], np.full((k, 2), centre), grid)
            )
            for h in (0, 1)
        ]
        # |CTF A_k|^2 per particle: the CTF takes power out of the references that a
        # particle cannot show, so an unweighted |A_k|^2 would favour blurred classes
        reference_power = [_shell_power(scoring_references[h], workers) for h in (0, 1)]
        angles_deg = np.arange(n_angles) * step_deg
        rotated_references = align.rotate_references(references, angles_deg)

        sums = np.zeros((2, k, size, size))
        denominators = np.zeros((2, k, n_shells))
        class_weight = np.zeros(k)
        residual_sum = 0.0
        for start in range(0, count, CHUNK):
            block = slice(start, min(start + CHUNK, count))
            rows = np.arange(block.start, block.stop)
            polar_spectra = align.polar_spectra(polar_of(block, prepared.score_images))
            particle_norm = (images[block] ** 2 * mask).sum(axis=(1, 2))
            reference_norm = np.empty((len(rows), k))
            correlation = np.empty((len(rows), k, n_angles))  # (b, k, angles)
            for h in (0, 1):
                half = rows % 2 == h
                reference_norm[half] = (
                    prepared.ctf_squared[prepared.ctf_group[rows[half]]] @ reference_power[h].T
                )
                correlation[half] = align.rotational_correlation(
                    polar_spectra[half], reference_spectra[h], n_angles
                )
            best_angle = correlation.argmax(axis=-1)
            cc = correlation.max(axis=-1)
            log_likelihood = (cc - 0.5 * reference_norm) / noise_variance + np.log(
                np.maximum(prior, 1e-12)
            )[None, :]
            if fixed:
                allowed = labels[rows][:, None] == np.arange(k)[None, :]
                log_likelihood = np.where(allowed, log_likelihood, -np.inf)
            winner = log_likelihood.argmax(axis=1)
            if params.assignment == "hard" or fixed:
                weights = np.zeros_like(log_likelihood)
                weights[np.arange(len(rows)), winner] = 1.0
            else:
                weights = np.exp(log_likelihood - log_likelihood.max(axis=1, keepdims=True))
                weights /= weights.sum(axis=1, keepdims=True)
                weights[weights < 1e-3] = 0.0
                weights /= weights.sum(axis=1, keepdims=True)

            # sub-sample angle and angular spread of the winning class
            winner_curve = correlation[np.arange(len(rows)), winner]  # (b, angles)
            j = best_angle[np.arange(len(rows)), winner]
            offset = align.parabolic_offset(
                winner_curve[np.arange(len(rows)), (j - 1) % n_angles],
                winner_curve[np.arange(len(rows)), j],
                winner_curve[np.arange(len(rows)), (j + 1) % n_angles],
            )
            posterior = np.exp(
                (winner_curve - winner_curve.max(axis=1, keepdims=True)) / noise_variance
            )
            posterior /= posterior.sum(axis=1, keepdims=True)
            rotation_std[rows] = np.hypot(
                _circular_std_deg(posterior, grid.angles_rad), step_deg / np.sqrt(12.0)
            )

            # translation: FFT correlation with the winning class rotated onto the particle
            new_shifts, peak, maps = align.translation_search(
                images[block], rotated_references[winner, j], max_shift, workers
            )
            finite = np.isfinite(maps)
            spread = np.where(
                finite,
                np.exp((np.where(finite, maps, 0.0) - peak[:, None, None]) / noise_variance),
                0.0,
            )
            spread /= spread.sum(axis=(1, 2), keepdims=True)
            offsets = np.fft.fftfreq(size, d=1.0 / size)
            mean_x = (spread * offsets[None, None, :]).sum(axis=(1, 2))
            mean_y = (spread * offsets[None, :, None]).sum(axis=(1, 2))
            variance = (
                spread
                * (
                    (offsets[None, None, :] - mean_x[:, None, None]) ** 2
                    + (offsets[None, :, None] - mean_y[:, None, None]) ** 2
                )
            ).sum(axis=(1, 2))
            translation_std[rows] = np.sqrt(variance + 1.0 / 12.0)
            shifts[block] = new_shifts
            residual_sum += float(
                (
                    particle_norm
                    - 2.0 * np.maximum(peak, cc[np.arange(len(rows)), winner])
                    + reference_norm[np.arange(len(rows)), winner]
                ).sum()
            )

            # accumulate every (particle, class) pair with weight into its half-set
            pair_rows, pair_classes = np.nonzero(weights)
            pair_weights = weights[pair_rows, pair_classes]
            pair_psi = (best_angle[pair_rows, pair_classes]) * step_deg
            is_winner = pair_classes == winner[pair_rows]
            pair_psi = np.where(is_winner, (j[pair_rows] + offset[pair_rows]) * step_deg, pair_psi)
            aligned = align.transform_images(
                prepared.sum_images[rows[pair_rows]], pair_psi, shifts[rows[pair_rows]]
            )
            halves = rows[pair_rows] % 2
            np.add.at(sums, (halves, pair_classes), aligned * pair_weights[:, None, None])
            groups = prepared.ctf_group[rows[pair_rows]]
            ctf_squared = prepared.ctf_squared[groups] if prepared.wiener else 1.0
            np.add.at(
                denominators,
                (halves, pair_classes),
                ctf_squared * np.ones(n_shells) * pair_weights[:, None],
            )
            np.add.at(class_weight, pair_classes, pair_weights)
            psi_best[rows] = (j + offset) * step_deg
            best_class[rows] = winner
            max_probability[rows] = weights[np.arange(len(rows)), winner]

        noise_variance = max(residual_sum / count / (np.pi * mask_radius**2), 1e-6)
        prior = np.maximum(class_weight, 1e-9) / class_weight.sum()
        change = float(np.mean(best_class != previous_class))
        changes.append(change)
        previous_class = best_class.copy()

        # new references: Wiener-corrected half-set averages, FRC-filtered, masked, centred
        half_spectra = scipy.fft.rfft2(sums, axes=(-2, -1), workers=workers)
        regulariser = params.wiener_constant * class_weight[None, :, None] / 2.0
        if not prepared.wiener:
            regulariser = np.zeros_like(regulariser)
        half_spectra /= (denominators + regulariser + 1e-12)[..., np.minimum(shells, n_shells - 1)]
        full_spectra = (
            scipy.fft.rfft2(sums.sum(axis=0), axes=(-2, -1), workers=workers)
            / (
                (denominators.sum(axis=0) + 2 * regulariser[0] + 1e-12)[
                    ..., np.minimum(shells, n_shells - 1)
                ]
            )
        )
        for label in range(k):
            frc_all[label] = _frc(half_spectra[0, label], half_spectra[1, label], shells, n_shells)
            resolution[label] = resolution_from_frc(frc_all[label], size, pixel, 0.143)
        full_frc = np.clip(2.0 * frc_all / (1.0 + np.abs(frc_all)), 0.0, 1.0)
        weight_filter = np.sqrt(2.0 * full_frc / (1.0 + full_frc))
        weight_filter[:, 0] = 1.0
        full_spectra *= weight_filter[:, np.minimum(shells, n_shells - 1)]
        references = scipy.fft.irfft2(
            full_spectra, s=(size, size), axes=(-2, -1), workers=workers
        ).astype(np.float32)
        # the references particles are scored against (not the class averages written out):
        # only up to score_lowpass_angstrom, where classes differ by shape rather than by
        # the noise the FRC filter lets through (each member's own noise among it: a bias
        # of ~|noise|^2 / class size towards staying put). Scoring each half against the
        # other half's average removes that bias but empties small classes (~30 particles
        # per half), so it is not offered (docs/particles.md)
        shell_index = np.minimum(shells, n_shells - 1)
        scoring_spectra = np.stack([full_spectra, full_spectra])
        if params.score_lowpass_angstrom:
            scoring_spectra = scoring_spectra * (
                shell_index <= size * pixel / params.score_lowpass_angstrom
            )
        scoring_references = scipy.fft.irfft2(
            scoring_spectra, s=(size, size), axes=(-2, -1), workers=workers
        ).astype(np.float32)
        splitting = (
            params.split_ratio is not None
            and not fixed
            and iteration < params.iterations - params.final_iterations
        )
        pairs = (
            classes_to_split(
                np.bincount(best_class, minlength=k),
                params.split_ratio,
                params.max_splits_per_iteration,
            )
            if splitting
            else []
        )
        for largest, emptiest in pairs:
            members = np.flatnonzero(best_class == largest)
            aligned = align.transform_images(images[members], psi_best[members], shifts[members])
            side = bisect_members(aligned, mask)
            references[largest] = aligned[side].mean(axis=0)
            references[emptiest] = aligned[~side].mean(axis=0)
            scoring_references[:, largest] = references[largest]
            scoring_references[:, emptiest] = references[emptiest]
            prior[[largest, emptiest]] = 0.5 * (prior[largest] + prior[emptiest])
            best_class[members[~side]] = emptiest
        if pairs:
            logger.info("class2d iteration %d: split classes %s", iteration + 1, pairs)
        # late on, an emptied class restarts from a random particle (RELION-like re-seeding):
        # splitting a large class now would unsettle the classes the last iterations refine
        for label in np.flatnonzero(class_weight < 0.5) if not splitting else []:
            pick = rng.integers(count, size=1)
            references[label] = align.transform_images(images[pick], np.zeros(1), shifts[pick])[0]
            scoring_references[:, label] = references[label]
        references *= mask
        scoring_references *= mask
        if params.centre_references:
            centres = align.centre_of_mass_xy(references, mask)
            references = align.shift_images(references, -centres, workers).astype(np.float32) * mask
            scoring_references = np.stack(
                [
                    align.shift_images(half, -centres, workers).astype(np.float32) * mask
                    for half in scoring_references
                ]
            )
        logger.info(
            "class2d iteration %d/%d: %.1f %% changed class, sigma^2 %.3f",
            iteration + 1,
            params.iterations,
            100.0 * change,
            noise_variance,
        )

    accuracy_rotations = np.array(
        [
            rotation_std[best_class == label].mean() if np.any(best_class == label) else 180.0
            for label in range(k)
        ]
    )
    accuracy_translations = np.array(
        [
            translation_std[best_class == label].mean() * pixel
            if np.any(best_class == label)
            else size * pixel
            for label in range(k)
        ]
    )
    return Class2DResult(
        class_averages=references,
        class_number=best_class + 1,
        psi_deg=np.mod(psi_best, 360.0),
        shift_xy_px=shifts,
        max_probability=max_probability,
        class_distribution=class_weight / max(class_weight.sum(), 1e-12),
        estimated_resolution_angstrom=resolution,
        accuracy_rotations_deg=accuracy_rotations,
        accuracy_translations_angstrom=accuracy_translations,
        frc=frc_all,
        pixel_size_angstrom=pixel,
        mask_radius_px=float(mask_radius),
        noise_variance=noise_variance,
        changes_per_iteration=changes,
    )
