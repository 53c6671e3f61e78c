"""The lab: a static GPU performance model and the real-compile checks, never imported by the product."""
