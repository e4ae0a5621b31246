"""nanoto: nano-topology optimization of metallic nanostructures with LAMMPS.

Importing this package loads neither LAMMPS nor torch; engines import their
backends when they are instantiated.
"""

__version__ = "0.1.0"
