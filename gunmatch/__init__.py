"""gunmatch: compare images of firearm components against a reference gallery."""
