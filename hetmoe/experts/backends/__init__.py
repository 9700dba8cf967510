"""Built-in encoder backends; each module registers its backend name when imported (see ``registry``)."""
