"""Sub-commands of the ``audiorep`` CLI; each module defines ``register(subparsers)``."""
