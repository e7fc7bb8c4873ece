"""X-ray trainers, on the project's generated parcels only.

- ``head``: a linear (LDA) head on frozen features of generated crops.
- ``finetune``: the last blocks and a projection head fine-tuned on the same crops.
- ``threatmap``: the dense "part here" head of ``matcher.threatmap``.
"""
