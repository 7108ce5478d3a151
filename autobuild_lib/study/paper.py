"""The paper's numbers that the chapters check (Mills et al., CVPR 2024, and its supplementary
material), each named once, with the table or section it comes from (restated in
``shared/paper-notes.md``).  The chapters and notebooks import them; none types them in.
"""
from __future__ import annotations

# ---------------------------------------------------------------- the spaces (Sec. 3.1, 5.1)
#: MBv3 architectures, 7,371^5 (Sec. 3.1)
MBV3_ARCHS = 2.18e19
#: PN architectures, x9 for stage 6 (Sec. 3.1)
PN_ARCHS = 1.96e20
#: modules of a 2-4 layer stage, 9^2 + 9^3 + 9^4 (Sec. 3.1)
STAGE_MODULES = 7371
#: modules of PN's merged unit (stages 5 + 6, 3-5 layers), 9^3 + 9^4 + 9^5 (Sec. 3.1)
PN_MERGED_MODULES = 66339
#: labelled architectures per OFA space (Sec. 5.1, 7.1)
ARCHS_PER_SPACE = 3000
#: of which a predictor trains on, the 90 % split (Table 2)
TRAIN_ARCHS = 2700

# ------------------------------------------------- Table 2 (MBv3 accuracy predictor, Sec. 4.2, 7.3)
#: hop moments N(mu_m^h, sigma_m^h), m = 0..3 (Table 2)
TABLE2_HOPS: dict[int, tuple[float, float]] = {0: (2.24, 0.39), 1: (13.83, 7.14), 2: (27.53, 8.67),
                                               3: (40.94, 9.73)}
#: label moments for l = 2, about the same in every stage (Table 2)
TABLE2_L2: tuple[float, float] = (77.0, 0.8)
#: label moments for l = 4, u = 1..5 (Table 2)
TABLE2_L4: dict[int, tuple[float, float]] = {1: (77.08, 0.76), 2: (77.12, 0.78), 3: (77.13, 0.74),
                                             4: (77.41, 0.62), 5: (77.26, 0.73)}

# ------------------------------------------------------------------ the IR predictor (Sec. 5.1, 7.6)
#: test SRCC of the 0-hop graph embedding on the IR graphs (Sec. 5.1, Fig. 3)
IR_HOP0_SRCC = 0.79

# ---------------------------------------------------------------- building and search (Sec. 5.1, 7.2, 7.5)
#: top-K per unit for construction (Sec. 5.1); K^5 architectures per equation
CONSTRUCTION_K = 3
#: AutoBuild-NAS: top-K per unit from each of P equations (Sec. 7.5); (P * K)^5 architectures
NAS_K, NAS_EQUATIONS = 25, 4
#: the evolutionary search's budget, 50 initial + 4 x 50 (Sec. 7.5)
NAS_INITIAL, NAS_ITERATIONS, NAS_BUDGET = 50, 4, 250

# ------------------------------------------------------------------ Stable Diffusion (Sec. 5.3, 7.8-7.10)
#: Table 1, FID (lower is better): method -> (architectures, mean, best)
TABLE1_FID: dict[str, tuple[int, float, float]] = {"evaluated": (68, 22.13, 10.54), "ES": (4, 10.82, 10.29),
                                                   "AutoBuild": (4, 10.13, 9.96)}
#: Table 3: 0-hop SRCC of the best FE-MLP
TABLE3_HOP0_SRCC = 0.6464
#: Table 3: FE-MLP scores of the best member, (feature, value) -> score
TABLE3_SCORES: dict[tuple[str, str], float] = {
    ("section", "input"): 1.3, ("section", "output"): 0.15, ("section", "middle"): 0.08,
    ("stage", "4"): 0.79, ("stage", "2"): 0.41, ("stage", "3"): 0.26, ("stage", "1"): 0.26,
    ("op", "Upsample"): 0.77, ("op", "ResConv"): 0.63, ("op", "Attention"): 0.33, ("op", "Downsample"): 0.0,
}
#: labelled variants of the second SD space (Sec. 7.10)
SD_HW_LABELLED = 90

# ------------------------------------------------------------------ panoptic segmentation (Sec. 5.2, 7.7)
#: pseudo-labelled architectures AutoBuild trains on, and fully fine-tuned ones forming the front (Sec. 5.2)
PANOPTIC_PSEUDO, PANOPTIC_FULL = 1300, 118
#: predictor epochs on the panoptic architectures (Sec. 7.1)
PANOPTIC_EPOCHS = 300
#: y = PQ/log10(FLOPs) overshoots the front's FLOPs by about this much, at fronts of about 170 GFLOPs (Sec. 5.2)
PANOPTIC_LOG_OVERSHOOT_GFLOPS, PANOPTIC_FRONT_GFLOPS = 5, 170
