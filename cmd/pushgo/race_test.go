//go:build race

package main

// raceEnabled: the race detector is on; its shadow memory inflates RSS readings.
const raceEnabled = true
