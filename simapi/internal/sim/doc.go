// Package sim implements a deterministic SEIR compartmental epidemic model
// integrated with the classical fourth-order Runge–Kutta method.
//
// The model is
//
//	dS/dt = -β·S·I/N
//	dE/dt =  β·S·I/N - σ·E
//	dI/dt =  σ·E - γ·I
//	dR/dt =  γ·I
//
// where β may be scaled piecewise-constantly per day by [Intervention]s.
// The package performs no I/O; it only validates [Params] and computes a
// [Result].
package sim
