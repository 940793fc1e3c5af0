"""Write and execute the example notebooks (`l0h0_study.ipynb`, `your_checkpoint.ipynb`) from the cells below.

Run `python examples/build_notebooks.py` (needs nbformat, nbclient, ipykernel: the `test` extra) to regenerate
the executed notebooks that are committed; it prints each notebook's run time.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

# Both notebooks end by printing one line `RESULTS {json}`: the values tests/test_notebooks.py checks.

SETUP = """\
%matplotlib inline
import json
import numpy as np
import matplotlib.pyplot as plt
import arithlens as al"""

PCA_GRID = """\
# PCA of each layer-0 head's output at P{position}, one row per head, one column per qtype (T8/T9/T10 red/green/blue,
# triangles where a carry/borrow leaves digit {digit}).
colours = {{8: "red", 9: "green", 10: "blue"}}
heads = [f"P{position}L0H{{h}}" for h in range(model.spec.n_heads)]
evr = {{}}
fig, axes = plt.subplots(len(heads), len(sets), figsize=(4 * len(sets), 3.2 * len(heads)), squeeze=False)
for row, head in enumerate(heads):
    for col, (qtype, batch) in enumerate(sets.items()):
        p = al.pca(model, head, batch)
        evr[f"{{head}} {{qtype}}"] = round(p.evr[0], 6)
        x, case, carry = p.array(), np.array(p.case), np.array(p.carry)
        ax = axes[row, col]
        for c in (8, 9, 10):
            for flag, marker in ((0, "o"), (1, "^")):
                keep = (case == c) & (carry == flag)
                ax.scatter(x[keep, 0], x[keep, 1], s=8, c=colours[c], marker=marker, alpha=0.5, linewidths=0)
        ax.set_title(f"{{head}} {{qtype}}: EVR {{100 * p.evr[0]:.0f}}% / {{100 * p.evr[1]:.0f}}%", fontsize=9)
        ax.tick_params(labelsize=7)
fig.tight_layout()
plt.show()"""

L0H0 = [
    ("markdown", """\
# The founding question, redone: is one layer-0 head at P18 doing carry *and* borrow?

The project's founding notebook loaded a mixed add/subtract model, built three question sets with
`CustomTriclassConfig` (ADD only, SUB only, NEG only; 300 each, split over the tricase classes T8/T9/T10),
looked at each layer-0 head's output at P18 under PCA coloured T8/T9/T10, and decided by eye. Here the same
steps run on arithlens's public API, and the decision comes from a node study with its statistics."""),
    ("code", SETUP + """
model = al.load_model()  # the default shipped model
print(model.spec.name, "-", model.spec.n_layers, "layers x", model.spec.n_heads, "heads")"""),
    ("markdown", """\
## The purpose map

Each useful node (mean ablation breaks some question) with the sub-task its patching experiments give it
(`A1.SC`: makes the carry out of digit 1, ...). The searches take about 30 s on two idle cores
(`tags = al.search(model)`, a `SearchReport` with every rate); to keep this notebook quick it reads the
tags `arithlens search --out examples/data` wrote with the same code (`<model>_algorithm.json`)."""),
    ("code", """\
tags = al.UsefulNodes.from_json("data/mix_d6_l3_h4_t10K_s372001_algorithm.json")
purposed = [n for n in tags.nodes if n.tags]
print(len(purposed), "of", len(tags.nodes), "useful nodes have a purpose; at P18 layer 0:")
for n in purposed:
    if n.name.startswith("P18L0"):
        print(" ", n.name, " ".join(t.split(":")[1] for t in n.tags))
tags.plot_map("MathsPurposePerNode")"""),
    ("markdown", """\
## The seed's three question sets

P18 computes answer digit A2; a carry or borrow into it comes from digit 1, the pair P18L0H3 reads.
`al.tricase(digit, counts)` builds the sets by construction, every row labelled with its class and its real
carry/borrow out of the digit (the predecessor inferred labels from row order)."""),
    ("code", """\
position = model.spec.layout.computed_at(2)  # P18
digit = 1
sets = {qtype: al.tricase(digit, {qtype: 300}, seed=0) for qtype in ("ADD", "SUB", "NEG")}
counts = {qtype: {f"T{c}": int((b.labels["tricase_case"] == c).sum()) for c in (8, 9, 10)} for qtype, b in sets.items()}
print("position", position, "digit", digit, counts)
cols = sets["SUB"].columns(features=False)
for i in range(0, 300, 100):
    print(cols["question"][i] + cols["answer"][i], cols["qtype"][i], f"T{cols['tricase_case'][i]}",
          "borrow out" if cols["carry_out"][i] else "no borrow out")"""),
    ("markdown", "## PCA of each layer-0 head at P18, per qtype"),
    ("code", PCA_GRID.format(position=18, digit=1)),
    ("markdown", """\
P18L0H0 and P18L0H2 copy D2 and D'2 (the base pair of A2); P18L0H3 reads D1/D'1, and its ADD panel splits
by the carry. Whether the head *uses* that for each operation is what the study below decides: attention,
necessity by ablation, sufficiency by patching, probes with a permutation null. (`al.pca(...).plot(interactive=True)`
gives the same scatter with hover: question, answer, class, carry; it needs the `interactive` extra.)

## The study of P18L0H3"""),
    ("code", """\
study = al.study_node(model, "P18L0H3", questions=300, pairs=100, per_case=150, mixed=500, permutations=100)
study"""),
    ("code", """\
print(study.verdict.text)
for qtype in study.qtypes:
    rep, v = study.representation[qtype], study.verdict.per_qtype[qtype]
    resample = study.necessity.per_qtype[qtype]["all"].rates["resample"].target_wrong
    word = "carry" if qtype == "ADD" else "borrow"
    print(f"{qtype}: probes: real {word} {rep.probe_carry.accuracy:.3f} (p={rep.probe_carry.p_value:.3f}), "
          f"pair {rep.pair_rule} {rep.probe_pair.accuracy:.3f}; "
          f"resample ablation breaks {study.necessity.target_digit}: {resample}, "
          f"patching success {study.sufficiency.per_qtype[qtype].success}, role {v.role}")
study.plot_necessity()"""),
    ("markdown", """\
In the shipped model the carry is linearly readable from P18L0H3 for ADD, but ablating or patching it barely
moves A2: the carries and borrows into A2 are made in layer 2. `arithlens analyze` studies every head the
searches tag with a carry or borrow; at P18 those are P18L2H0 and P18L2H2, each holding A1.SC, A1.MB and A1.NB
in separate directions (`python scripts/founding_example.py DIR` prints their numbers from the analysis)."""),
    ("code", """\
print("RESULTS " + json.dumps({"model": model.spec.name, "position": position, "digit": digit, "counts": counts,
                               "evr": evr, "study_digit": study.study_digit, "roles": list(study.verdict.roles),
                               "polysemantic": study.verdict.polysemantic, "verdict": study.verdict.text,
                               "n_purpose_nodes": len(purposed)}))"""),
]

CHECKPOINT = [
    ("markdown", """\
# Your own checkpoint: a TransformerLens `.pth`

arithlens reads TransformerLens-layout state dicts (`embed.W_E`, `blocks.0.attn.W_Q`, ...) with
`torch.load(weights_only=True)`. To run offline, this notebook writes one from a shipped model, loads it
back as a user's checkpoint, and repeats the founding notebook's steps on it."""),
    ("code", SETUP + """
import tempfile
from pathlib import Path
import torch

shipped = al.load_model()
path = Path(tempfile.mkdtemp()) / "my_model.pth"
torch.save(shipped.state_dict(), path)  # the TransformerLens state-dict layout
print(path.name, path.stat().st_size // 1024, "KiB,", len(shipped.state_dict()), "tensors, e.g.",
      list(shipped.state_dict())[:3])"""),
    ("markdown", """\
A bare `.pth` holds only tensors: the sizes are read from their shapes, but which operations the model was
trained on is not in them, so `spec=` names it (here the shipped model's name)."""),
    ("code", """\
model = al.load_model(path, spec="mix_d6_l3_h4_t10K_s372001")
same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), shipped.state_dict().values()))
print(model.spec.name, "weights identical to the shipped model:", same)"""),
    ("markdown", "## The seed's question sets and the layer-0 heads at P18"),
    ("code", """\
position, digit = model.spec.layout.computed_at(2), 1
sets = {qtype: al.tricase(digit, {qtype: 300}, seed=0) for qtype in ("ADD", "SUB", "NEG")}
counts = {qtype: len(b) for qtype, b in sets.items()}
print(counts)"""),
    ("code", PCA_GRID.format(position=18, digit=1)),
    ("markdown", "## Useful nodes and the study of P18L0H3"),
    ("code", """\
useful = al.useful_nodes(model, questions=64)
display(useful)
useful.plot_map("FailureFrequency")"""),
    ("code", """\
study = al.study_node(model, "P18L0H3", questions=200, pairs=60, per_case=100, mixed=400, permutations=100)
display(study)
study.plot_pca()"""),
    ("code", """\
print("RESULTS " + json.dumps({"model": model.spec.name, "identical": same, "counts": counts, "evr": evr,
                               "useful_positions": list(useful.useful_positions), "n_useful": len(useful.nodes),
                               "study_digit": study.study_digit, "roles": list(study.verdict.roles),
                               "verdict": study.verdict.text}))"""),
]

NOTEBOOKS = {"l0h0_study.ipynb": L0H0, "your_checkpoint.ipynb": CHECKPOINT}


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    return nb


def execute(nb: nbformat.NotebookNode, timeout: int = 600) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel with examples/ as the working directory; raises on any error."""
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    return nb


def main(names: list[str]) -> None:
    for name in names or list(NOTEBOOKS):
        nb = build(NOTEBOOKS[name])
        start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        execute(nb)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel's CPU time: load inflates wall time
        cpu_seconds = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
        for cell in nb.cells:  # no run-dependent metadata in the committed file
            cell.metadata.pop("execution", None)
        nbformat.write(nb, HERE / name)
        print(f"{name}: executed in {seconds:.1f} s wall, {cpu_seconds:.1f} s kernel CPU, "
              f"{(HERE / name).stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(sys.argv[1:])
