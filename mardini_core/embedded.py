"""Where the weights shipped inside the package live (mardini_core/default/): a leaf module, so the
default model, the autoencoder loader and the RIFE anchor all name their files without importing each other."""
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent / "default"
MODEL_FILE = DEFAULT_DIR / "mardini-base.safetensors"  # the embedded default MarDini (fp16)
VAE_FILE = DEFAULT_DIR / "mardini-tae.safetensors"  # its autoencoder
RIFE_FILE = DEFAULT_DIR / "rife-4.safetensors"  # the anchor's interpolator (NOTICE: provenance, licence, sha256)
