"""syncd: keeps a school's roster in step with the files its SIS drops."""

__version__ = "0.1.0"
