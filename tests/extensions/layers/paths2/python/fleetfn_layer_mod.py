"""The second paths layer's copy of the module: layers are extracted in order, a later one wins."""
ANSWER = 2
