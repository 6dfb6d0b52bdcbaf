"""Protein backbones from structure files: (phi, psi) dihedrals (the torus T^2), residue
frames (SO(3)) and both per residue (T^2 x SO(3)), parsed with Biopython's ``Bio.PDB``.

The files are Biopython's test structures (see :func:`structure_files`; on Debian
``apt-get install python-biopython-doc``); the first model of each is read.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowmatch.errors import DataError

__all__ = [
    "PDB_DIR_ENV", "StructureScan", "backbone_frames", "load_backbone_angles",
    "load_residue_frames", "load_residues", "scan_structures", "structure_files",
]  # fmt: skip

PDB_DIR_ENV = "FLOWMATCH_PDB_DIR"
"""Environment variable naming a folder of structure files, searched first."""
_DEBIAN_PDB_DIR = Path("/usr/share/doc/python-biopython-doc/Tests/PDB")
_SAME_ANGLES = 0.01  # radians: structures whose residue angles all agree this closely are copies


def package_dir(package: str, data_set: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"{data_set} data set: the {package!r} package is not installed; "
            f"pip install 'flowmatch[data]' (or pip install {package})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _wrap(a: Tensor) -> Tensor:
    from flowmatch.manifolds.flat import wrap

    return wrap(a)


def structure_files(directories: Sequence[str | Path] | None = None) -> list[Path]:
    """Protein structure files (``.pdb``, ``.ent``, ``.cif``, each maybe gzipped).

    Args:
        directories: folders to search in order; None: ``$FLOWMATCH_PDB_DIR`` when set, the
            Debian package ``python-biopython-doc``'s ``Tests/PDB``, then ``Tests/PDB`` beside
            Biopython's ``Bio`` folder (a source tree: sdist or checkout).

    Returns:
        The files of the first folder that holds any, sorted by name.

    Raises:
        DataError: no folder holds a structure file.
    """
    if directories is None:
        spec = importlib.util.find_spec("Bio")
        source = [Path(spec.origin).parents[1] / "Tests" / "PDB"] if spec and spec.origin else []
        env = [os.environ[PDB_DIR_ENV]] if os.environ.get(PDB_DIR_ENV) else []
        directories = [*env, _DEBIAN_PDB_DIR, *source]
    for folder in map(Path, directories):
        if folder.is_dir():
            files = [p for p in folder.iterdir() if p.is_file() and _is_structure(p.name)]
            if files:
                return sorted(files, key=lambda p: p.name)
    raise DataError(
        f"no protein structure files (.pdb, .cif) in {', '.join(map(str, directories))}; "
        f"install Biopython's test data (apt-get install python-biopython-doc) or set {PDB_DIR_ENV}"
    )


def _is_structure(name: str) -> bool:
    return name.lower().removesuffix(".gz").endswith((".pdb", ".ent", ".cif"))


def backbone_frames(n: Tensor, ca: Tensor, c: Tensor) -> Tensor:
    """Residue frames from the positions of the backbone atoms N, CA and C, each (M, 3).

    e1 = (C - CA)/|C - CA|, e2 = (N - CA) orthogonalized against e1 and normalized, e3 = e1 x e2.

    Returns:
        Rotations with columns [e1, e2, e3], shape (M, 3, 3); NaN where the atoms are collinear.
    """
    e1 = (c - ca) / (c - ca).norm(dim=-1, keepdim=True)
    u = (n - ca) - ((n - ca) * e1).sum(-1, keepdim=True) * e1
    norm = u.norm(dim=-1, keepdim=True)
    e2 = u / torch.where(norm > 1e-6, norm, torch.nan)
    return torch.stack([e1, e2, torch.linalg.cross(e1, e2)], dim=-1)


@dataclass(frozen=True)
class StructureScan:
    """Residues of structure files (first model of each; cached: treat as read-only).

    Attributes:
        angles: (phi, psi) in radians where both are defined, shape (N, 2), float32.
        frames: :func:`backbone_frames` of residues with N, CA and C, shape (M, 3, 3), float32.
        residues: residues with both: (phi, psi, the 9 entries of the frame row-major),
            shape (K, 11), float32.
        used: the files whose residues are in ``angles`` and ``frames``.
        failed: files that did not parse (skipped).
        duplicates: files skipped as copies of an earlier used file (same residue names, all
            angles within 0.01 rad): the same structure in another format or moved.
    """

    angles: Tensor
    frames: Tensor
    residues: Tensor
    used: tuple[Path, ...]
    failed: tuple[Path, ...]
    duplicates: tuple[Path, ...]


def _parse_structure(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Residue names, (phi, psi) (NaN where undefined) and N/CA/C coordinates of peptides."""
    from Bio.PDB import MMCIFParser, PDBParser, PPBuilder
    from Bio.PDB.PDBExceptions import PDBConstructionWarning

    name = path.name.lower()
    parser = MMCIFParser if name.removesuffix(".gz").endswith(".cif") else PDBParser
    names, angles = [], []
    atoms: list[Any] = []  # per residue: 3 coordinate rows, or a NaN (3, 3) array
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PDBConstructionWarning)
        with gzip.open(path, "rt") if name.endswith(".gz") else open(path) as fh:
            structure = parser(QUIET=True).get_structure(path.name, fh)
        for peptide in PPBuilder().build_peptides(structure):  # first model only
            for residue, (phi, psi) in zip(peptide, peptide.get_phi_psi_list(), strict=True):
                names.append(residue.get_resname())
                angles.append([math.nan if a is None else a for a in (phi, psi)])
                if all(a in residue for a in ("N", "CA", "C")):
                    atoms.append([residue[a].coord for a in ("N", "CA", "C")])
                else:
                    atoms.append(np.full((3, 3), np.nan))
    return names, np.array(angles).reshape(-1, 2), np.array(atoms, np.float64).reshape(-1, 3, 3)


@lru_cache(maxsize=4)
def _scan(files: tuple[Path, ...]) -> StructureScan:
    kept: list[tuple[list[str], np.ndarray]] = []
    angles, frames, residues, used, failed, duplicates = [], [], [], [], [], []
    for path in files:
        try:
            names, phi_psi, atoms = _parse_structure(path)
        except Exception:  # Bio.PDB raises many kinds on malformed files: skip and count
            failed.append(path)
            continue
        if not names:
            continue
        if any(n == names and _same_angles(a, phi_psi) for n, a in kept):
            duplicates.append(path)
            continue
        kept.append((names, phi_psi))
        used.append(path)
        has_angles = torch.from_numpy(~np.isnan(phi_psi).any(axis=1))
        angles.append(torch.from_numpy(phi_psi)[has_angles])
        frame = backbone_frames(*torch.from_numpy(atoms).unbind(1))
        has_frame = torch.isfinite(frame).all(dim=2).all(dim=1)
        frames.append(frame[has_frame])
        both = has_angles & has_frame
        residues.append(torch.cat([torch.from_numpy(phi_psi)[both], frame[both].flatten(1)], 1))
    return StructureScan(
        angles=torch.cat([torch.zeros(0, 2, dtype=torch.float64), *angles]).float(),
        frames=torch.cat([torch.zeros(0, 3, 3, dtype=torch.float64), *frames]).float(),
        residues=torch.cat([torch.zeros(0, 11, dtype=torch.float64), *residues]).float(),
        used=tuple(used), failed=tuple(failed), duplicates=tuple(duplicates),
    )  # fmt: skip


def _same_angles(a: np.ndarray, b: np.ndarray) -> bool:
    """Undefined (NaN) at the same residues, and all others within :data:`_SAME_ANGLES`."""
    if not np.array_equal(np.isnan(a), np.isnan(b)):  # also False for different shapes
        return False
    diff = np.remainder(a - b + math.pi, 2 * math.pi) - math.pi
    return bool(np.all(np.abs(np.nan_to_num(diff)) <= _SAME_ANGLES))


def scan_structures(files: Sequence[str | Path] | None = None) -> StructureScan:
    """Parse structure files (None: :func:`structure_files`) once; cached per list of files.

    Raises:
        DataError: Biopython is not installed, or no structure files are found.
    """
    package_dir("Bio", "protein")
    return _scan(tuple(map(Path, files if files is not None else structure_files())))


def load_backbone_angles() -> Tensor:
    """Backbone dihedrals (phi, psi) of Biopython's test structures (:func:`scan_structures`).

    Residues where phi or psi is undefined (chain ends and breaks), files that do not parse
    and duplicate structures are skipped; residues are in file-name and chain order.

    Returns:
        Radians in [-pi, pi), shape (N, 2), float32: points on the torus T^2.
    """
    return _wrap(scan_structures().angles.clone())


def load_residue_frames() -> Tensor:
    """Residue frames (:func:`backbone_frames`) of Biopython's test structures.

    Returns:
        Rotation matrices, shape (N, 3, 3), float32: points on SO(3).
    """
    return scan_structures().frames.clone()


def load_residues() -> Tensor:
    """Per residue with both: (phi, psi) in radians and its frame, on T^2 x SO(3).

    Returns:
        (N, 11) float32: the two angles in [-pi, pi), then the frame's 9 entries row-major.
    """
    res = scan_structures().residues.clone()
    res[:, :2] = _wrap(res[:, :2])
    return res
