"""What is done with a trained crystal model, written to disk: generate, reconstruct, predict a structure
from a formula (CSP), optimise a property, aim at a property, the demo."""
