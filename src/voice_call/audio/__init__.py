"""Pure audio primitives, no I/O and no event loop: G.711 codecs, resampling, DTMF tones, framing.

The ground floor: `media/`, `speech/` and the emulators build on it; it imports nothing of ours
above it.
"""
