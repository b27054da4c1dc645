"""Print the core and worker requirements for the ROCm image, without torch and CUDA.

The base image's ROCm torch is authoritative: anything named torch*, nvidia-* or triton is
left out here, and the Dockerfile pins the installed torch as a constraint so that no
dependency can pull a CUDA build in its place.

Usage: python3 docker/worker_requirements.py pyproject.toml > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib

EXCLUDED = re.compile(r"^(torch|torchvision|torchaudio|triton|pytorch-triton|nvidia-)", re.I)


def worker_requirements(pyproject_text: str) -> list[str]:
    project = tomllib.loads(pyproject_text)["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["worker"]
    return [req for req in wanted if not EXCLUDED.match(req.strip())]


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"
    with open(path, encoding="utf-8") as handle:
        print("\n".join(worker_requirements(handle.read())))
