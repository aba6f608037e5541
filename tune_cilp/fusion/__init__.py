"""The networks: the variant registry (`variants`, no torch), the fusion networks, the shared
layers, the CILP networks and losses. Importing the package imports no torch."""
