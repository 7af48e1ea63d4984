"""The accuracy budgets files are held to, per precision, against PyTorch fp32 on the same
inputs: per output max/mean abs differences, the share of 4x4 patches selected or refined
differently, and the paper's metrics as a ratio to fp32's. `mattex verify` and `mattex
evaluate` read them; docs/precision.md explains where each number comes from."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Budget:
    """Largest accepted difference of one output against PyTorch fp32 on the same inputs."""

    max_abs: float
    mean_abs: float


@dataclass(frozen=True)
class MetricBudget:
    """Largest accepted ratio of the paper's metrics (file / PyTorch fp32) against ground truth,
    over a set of composites; a ratio within `floor` of zero error counts as met."""

    ratio: float
    floor: float = 1e-3


@dataclass(frozen=True)
class PrecisionBudget:
    outputs: dict[str, Budget]
    # Share of (image, 4x4 patch) cells selected differently, or whose alpha differs from
    # PyTorch by more than `patch_tolerance` anywhere in the patch.
    patch_mismatch: float
    patch_tolerance: float
    metrics: MetricBudget

    @property
    def tie_band(self) -> float:
        """How close to a selection boundary (the k-th largest error; 0 under
        prevent_oversampling; the threshold) a patch's error must lie for its selection to be
        interchangeable: the error map's own max budget. A file within that budget may order
        such patches either way, so `mattex verify` reports their flips without failing them."""
        return self.outputs["err_sm"].max_abs


def _outputs(pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm) -> dict[str, Budget]:
    return {
        "pha": Budget(*pha),
        "fgr": Budget(*fgr),
        "pha_sm": Budget(*pha_sm),
        "fgr_sm": Budget(*fgr_sm),
        "err_sm": Budget(*err_sm),
        "ref_sm": Budget(*ref_sm),
    }


# Every budget is (max abs, mean abs) against PyTorch fp32 on the same inputs.
# fp32: the same network in the same precision. Differences come from float32 rounding in other
# kernels (ONNX Runtime vs PyTorch), measured at <= 2e-7 on mobilenetv2 and resnet50.
# fp16 and int8: a patch selected differently is refined in one file and not in the other, so a
# pixel may differ by up to 1 there: pha/fgr/ref_sm max is not bounded, the share of such patches
# is (ref_sm's mean is the share of cells selected differently). Measured with `mattex verify
# --data` (mobilenetv2 demo weights, 8 held-out synthetic composites; worst of 256x256 k=500,
# 384x384 k=500 and 512x512 k=5000, int8 calibrated on 4 or 8 other composites, 7-bit weights):
#   fp16: pha mean 7.0e-5, fgr mean 9.2e-5, pha_sm max 7.8e-3 mean 5.2e-5, fgr_sm max 1.9e-3
#         mean 7.9e-5, err_sm max 2.7e-3 mean 4.4e-5, selection 0.03%, patches 0.02%.
#   int8: pha mean 1.8e-3, fgr mean 4.9e-3, pha_sm max 0.31 mean 2.2e-3, fgr_sm max 0.066
#         mean 5.3e-3, err_sm max 0.105 mean 2.2e-3, selection 1.0%, patches 1.1%.
# resnet50 with seeded random weights (numerics only, 256x256): fp16 pha mean 2.8e-5, no patch
# differs; int8 pha mean 5.6e-4, patches 0.02%.
# Budgets sit 2-5x above those; the metric budgets (ratio of SAD/MSE/Grad/Conn to PyTorch fp32
# against ground truth) are the quality gate (measured: benchmarks/results_precision_hd_cpu.json).
BUDGETS = {
    "fp32": PrecisionBudget(
        outputs=_outputs(
            pha=(1e-4, 1e-5),
            fgr=(1e-4, 1e-5),
            pha_sm=(1e-4, 1e-5),
            fgr_sm=(1e-4, 1e-5),
            err_sm=(1e-4, 1e-5),
            ref_sm=(0.0, 0.0),
        ),
        patch_mismatch=0.0,
        patch_tolerance=1e-4,
        metrics=MetricBudget(ratio=1.001),
    ),
    "fp16": PrecisionBudget(
        outputs=_outputs(
            pha=(1.0, 5e-4),
            fgr=(1.0, 5e-4),
            pha_sm=(3e-2, 2.5e-4),
            fgr_sm=(1e-2, 4e-4),
            err_sm=(1.5e-2, 2.5e-4),
            ref_sm=(1.0, 2e-3),
        ),
        patch_mismatch=5e-3,
        patch_tolerance=2e-2,
        metrics=MetricBudget(ratio=1.02),
    ),
    # int8's coarse outputs, re-derived across sizes (tests/exporter/test_precision_sizes.py): mobilenetv2
    # demo, exported at 256x256 (k = 500), float and uint8 inputs, 3 held-out sets of 8 composites
    # at 256x256, 192x192, 512x512, 480x864 and 72x96 (fewer patches than k). Worst of all:
    # pha mean 2.9e-3, fgr mean 6.8e-3, pha_sm max 0.98 mean 8.5e-3 (at 72x96, where a 18x24 coarse
    # map is mostly edge), err_sm max 0.22 mean 6.5e-3, patches 1.1%. A coarse pixel on a hard edge
    # moves by up to 1 (as pha's does where a patch flips), so pha_sm's max is unbounded; its mean
    # and err_sm's take twice the worst. No layer kept float helps: the error is spread over the
    # backbone (first conv, ASPP or decoder float: pha_sm mean within 10% of the default).
    "int8": PrecisionBudget(
        outputs=_outputs(
            pha=(1.0, 6e-3),
            fgr=(1.0, 1.5e-2),
            pha_sm=(1.0, 1.5e-2),
            fgr_sm=(0.2, 1.5e-2),
            err_sm=(0.3, 1.2e-2),
            ref_sm=(1.0, 3e-2),
        ),
        patch_mismatch=0.04,
        patch_tolerance=0.1,
        metrics=MetricBudget(ratio=1.10),
    ),
    # bf16: an fp32 file run with OpenVINO's bf16 arithmetic (inference_precision="bf16", CPUs
    # with AMX or AVX-512 BF16). Measured by proxy (benchmarks/bf16_proxy.py: PyTorch CPU autocast
    # to bfloat16, demo mobilenetv2, 8 held-out composites, worst of 256x256 k=500 and 512x512
    # k=5000): pha mean 5.5e-4, fgr mean 8.7e-4, pha_sm max 0.045 mean 4.7e-4, fgr_sm max 0.014
    # mean 9.1e-4, err_sm max 0.016 mean 4.3e-4, selection 0.07%, SAD/MSE/Grad/Conn within 0.5%
    # of fp32. The issue that asked for bf16 measured OpenVINO itself on an AMX Xeon: pha mean
    # 1-2e-3, alpha MSE within 3% of fp32 (OpenVINO also runs elementwise ops in bf16, which the
    # proxy does not). Budgets sit above the real measurement; the metric ratio allows 5%.
    "bf16": PrecisionBudget(
        outputs=_outputs(
            pha=(1.0, 5e-3),
            fgr=(1.0, 6e-3),
            pha_sm=(0.2, 4e-3),
            fgr_sm=(0.08, 6e-3),
            err_sm=(0.08, 3e-3),
            ref_sm=(1.0, 1e-2),
        ),
        patch_mismatch=0.02,
        patch_tolerance=0.05,
        metrics=MetricBudget(ratio=1.05),
    ),
}


# The inputs a file is verified on, by kind: the paper's evaluation composites (`mattex verify
# --data`, `mattex evaluate`: the subject composited over a background, the plate perturbed by a
# third of a pixel) and footage (`mattex verify`'s own generated pairs, `--images`, `--video`:
# calibration/footage.py, the plate misaligned by 1-2 px, re-exposed, noisy, over textured rooms,
# the subject near or far). The budgets above are the composites'.
COMPOSITES, FOOTAGE = "composites", "footage"
INPUT_KINDS = (COMPOSITES, FOOTAGE)

# Footage budgets where the composites' cannot be met, raised to what was measured: `mattex
# verify`'s footage pairs (measure/inputs.py footage_pairs, seed 5), mobilenetv2 demo weights
# exported at 256x256 with k = 500 and debug outputs, int8 calibrated on 32 `mattex data synth`
# portraits captured as footage (the default since issue 48), ONNX Runtime on a 2-core Xeon with
# AMX; 16 samples at each of 256x256, 192x192 and 192x256, 4 at 480x864. Worst size's mean
# (95% upper bound of the mean), where over the composites' budget:
#   fp16: pha_sm mean 2.7e-4 (5.7e-4) max 0.045, err_sm mean 1.9e-4 (3.0e-4; the suite's fp16
#         file 2.6e-4 over 2 samples), patches 0.39% (1.07%); pha 1.8e-4 and fgr 1.3e-4 stay
#         well within theirs.
#   int8: pha mean 5.0e-3 (8.8e-3; 5.3-5.9e-3 on other seeds at 256x256, a frame's up to 0.03),
#         err_sm mean 9.7e-3 (1.6e-2), patches 2.3% (4.5%), pha_sm 7.1e-3 (1.1e-2; the suite's
#         int8 file, calibrated on 4 composites: 8.3e-3 over 6 samples, 1.2e-2 over 2); fgr
#         7.2e-3 within.
# A misaligned plate over a textured room makes the error map light up across the background:
# near-equal errors over many patches, whose order int8 (and fp16, less) changes. Calibrating on
# such pairs helped little (int8 pha mean 5.9e-3 -> 5.3e-3 at 256x256, 16 frames). The raised
# budgets sit 2-4x above the worst mean and above its upper bound (int8's 2.5-3x: on the AVX2
# machine without VNNI where issue 48 was measured, int8 errors on the same pairs were 1.45x
# this machine's); the rest are unchanged.
FOOTAGE_BUDGETS: dict[str, PrecisionBudget] = {
    "fp16": replace(
        BUDGETS["fp16"],
        outputs={**BUDGETS["fp16"].outputs, "pha_sm": Budget(0.1, 1e-3), "err_sm": Budget(1.5e-2, 1e-3)},
        patch_mismatch=0.02,
    ),
    "int8": replace(
        BUDGETS["int8"],
        outputs={
            **BUDGETS["int8"].outputs,
            "pha": Budget(1.0, 1.5e-2),
            "pha_sm": Budget(1.0, 3e-2),
            "err_sm": Budget(0.3, 3e-2),
        },
        patch_mismatch=0.06,
    ),
}


def budget_for(precision: str, kind: str = COMPOSITES) -> PrecisionBudget:
    """The budget a file of `precision` is held to on inputs of `kind`."""
    if kind == FOOTAGE and precision in FOOTAGE_BUDGETS:
        return FOOTAGE_BUDGETS[precision]
    return BUDGETS[precision]
