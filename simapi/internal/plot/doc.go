// Package plot renders simulation results as self-contained SVG images.
package plot
