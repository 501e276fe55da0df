"""DataJoint table declarations; each make() fetches, calls one core function, inserts."""
