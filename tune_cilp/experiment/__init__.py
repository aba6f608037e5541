"""The driver lifecycle of a Ray Tune experiment, once: identity + lock, Ray session, graceful
stop, the Tuner, fit or resume, trial rows; and the trial function that runs inside Tune."""
