"""Samplers: timestep math behind one ``set_timesteps`` / ``step`` contract; they know nothing about masks."""
