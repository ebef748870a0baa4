"""Home Assistant tests, one folder per integration as in Home Assistant core's tree."""
