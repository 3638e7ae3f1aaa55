"""The regulation's registration process, as self-contained parts: the seven forms as records
(forms.py), printed as official letters (letters.py), and the working-day calendar of its reply
periods (workdays.py). No storage and no web code: the registration workflow builds on these."""
