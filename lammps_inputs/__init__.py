"""LAMMPS input templates of nanoto, installed as the package ``nanoto_lammps_inputs``.

The ``*.lmp.j2`` files are Jinja2 templates that render to plain LAMMPS input;
see README.md in this folder for how the rendered files run by hand.
"""

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent
