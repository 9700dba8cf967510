"""The command layer: one module per area registers its ``hetmoe`` commands on the typer app in :mod:`hetmoe.cli`.

It sits above the library: commands import the library packages, and no library package imports a command module.
"""
