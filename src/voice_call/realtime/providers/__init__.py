"""One file per speech-to-speech model service, each implementing `realtime.model.RealtimeModel`."""
