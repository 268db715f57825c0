"""kdbench: measure what knowledge distillation buys in accuracy and what each model costs."""

__version__ = "0.1.0"
