"""Write scikit-learn's bundled wine table (178 x 13) to examples/wine.csv for configs/wine.yaml.

Usage: python examples/make_wine_csv.py
"""

from pathlib import Path

import torch
from sklearn.datasets import load_wine

from flowmatch.data.tabular import save_table

if __name__ == "__main__":
    wine = load_wine()
    out = Path(__file__).with_name("wine.csv")
    save_table(out, torch.tensor(wine.data, dtype=torch.float32), list(wine.feature_names))
    print(f"wrote {out} ({wine.data.shape[0]} rows, {wine.data.shape[1]} columns)")
