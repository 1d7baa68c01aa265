"""Run notebooks on the fake GPU of ``fake_cuda.py`` and list what a real GPU would reject.

Usage (``make gpu-paths`` runs it on every chapter)::

    python tests/fake_cuda_notebooks.py book/part2/04_decoding.ipynb [more notebooks]

Each notebook runs in its own kernel with a first cell that enters ``fake_cuda()``, so
``get_device()`` returns ``cuda`` and every model and tensor moved there is tracked. Cells
run to the end even when one fails. Printed per notebook: its findings (places where a CPU
tensor meets a GPU one, a draw uses a generator on the wrong device, or a GPU tensor goes
to NumPy) and the cells that raised. Code that asks the CUDA driver itself raises (streams,
CUDA memory statistics); their cells raise here without saying anything about a GPU.
The exit status is 1 when any notebook has findings. It takes a few minutes per notebook.
"""

import json
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ENTER = f"import sys; sys.path.insert(0, {str(HERE)!r})\nfrom fake_cuda import fake_cuda\n_fake = fake_cuda()\n_findings = _fake.__enter__()"
REPORT = "import json; print('FAKE-CUDA-FINDINGS ' + json.dumps(_findings))"


def check(path: Path) -> tuple[list[str], list[str]]:
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(ENTER))
    nb.cells.append(nbformat.v4.new_code_cell(REPORT))
    client = NotebookClient(nb, timeout=1800, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors, findings = [], []
    for i, cell in enumerate(nb.cells[1:-1]):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                errors.append(f"cell {i}: {out.ename}: {out.evalue[:200]}")
    for out in nb.cells[-1].get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith("FAKE-CUDA-FINDINGS "):
                findings = json.loads(line.split(" ", 1)[1])
    return findings, errors


def main(paths: list[str]) -> int:
    status = 0
    for p in paths:
        start = time.time()
        findings, errors = check(Path(p).resolve())
        print(f"{p}: {len(findings)} findings, {len(errors)} failing cells ({time.time() - start:.0f} s)", flush=True)
        for line in findings + errors:
            print("   ", line, flush=True)
        status |= bool(findings)
    return status


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
