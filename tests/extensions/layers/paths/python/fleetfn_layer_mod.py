"""A module of the first paths layer (/opt/python); the second layer replaces this file."""
ANSWER = 1
