"""Declarative files only: sweeps, Slurm templates and site profiles (installed as ``nanoto_workflows``)."""
