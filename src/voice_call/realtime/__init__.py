"""Realtime voice: a call's audio bridged to a speech-to-speech model (OpenAI Realtime, Gemini
Live), one session per call. `model.py` is the small protocol every model provider implements
(`providers/<id>.py`); the bridge (`bridge.py`) carries carrier frames to the model and paced
model audio back, handles barge-in, tools and the commands."""
