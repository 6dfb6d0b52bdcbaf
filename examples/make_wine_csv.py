"""Write scikit-learn's bundled wine table (178 x 13) to examples/wine.csv for configs/wine.yaml,
and with its cultivar as a categorical column (class_0, class_1, class_2) to
examples/wine_classes.csv for configs/wine_classes.yaml.

Usage: python examples/make_wine_csv.py
"""

from pathlib import Path

import torch
from sklearn.datasets import load_wine

from flowmatch.data.mixed import save_mixed_table
from flowmatch.data.tabular import save_table

if __name__ == "__main__":
    wine = load_wine()
    here = Path(__file__).parent
    data = torch.tensor(wine.data, dtype=torch.float32)
    columns = list(wine.feature_names)
    save_table(here / "wine.csv", data, columns)
    classes = [str(c) for c in wine.target_names]
    save_mixed_table(
        here / "wine_classes.csv",
        data,
        torch.tensor(wine.target).unsqueeze(1),
        columns=[*columns, "cultivar"],
        kinds=["continuous"] * len(columns) + ["categorical"],
        categories={"cultivar": classes},
    )
    print(f"wrote wine.csv and wine_classes.csv to {here} ({data.shape[0]} rows)")
