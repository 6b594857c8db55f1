"""Support code used only by benchmarks and their tests (not part of the product):
the WILDTRACK loader and track synthesiser, the seeded detection-noise generator."""
