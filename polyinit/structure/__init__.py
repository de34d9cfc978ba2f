"""Model structure from what the model computes: a traced graph and the passes that read sites,
blocks, stacks and logical parameters off it (see ``polyinit.structure.graph``)."""
