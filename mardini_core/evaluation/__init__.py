"""VIDIM-Bench-style evaluation: clips, metrics, baselines and the protocol that scores them.

Modules: `clips` (which frames of which videos), `metrics` (PSNR, SSIM), `baselines` (linear
blending, DIS optical flow, a still frame), `protocol` (what each method is given and what is
scored), `model_methods` (MarDini behind the same interface), `sheet` (contact sheets).
"""
