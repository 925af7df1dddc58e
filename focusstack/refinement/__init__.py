"""Transition-region refinement (Liu et al., "Focus Stacking with High Fidelity and Superior
Visual Effects"): foreground mask (FSB), PSF sigma (KEB) and diffusion elimination (Eq. 13-15).
"""
