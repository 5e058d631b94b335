#!/usr/bin/env bash
# Prints the ratios `make bench` is read by, from one run's output: each
# pair was measured in the same run, so machine noise mostly cancels out.
set -euo pipefail
file=${1:?usage: bench-ratios.sh BENCH_OUTPUT}
awk '
/^Benchmark/ { name=$1; sub(/-[0-9]+$/, "", name); ns[name]=$3 }
function ratio(label, a, b) {
	if ((a in ns) && (b in ns) && ns[b] > 0) printf "  %-58s %8.3f\n", label, ns[a]/ns[b]
}
END {
	print "\nratios (ns/op of the first over the second, same run):"
	ratio("verify middleware warm / cold (remembered token vs signature)", "BenchmarkMiddlewareWarm", "BenchmarkMiddlewareCold")
	ratio("GET /v1/forecasts/{id} authenticated / auth off", "BenchmarkGetForecastAuthenticated", "BenchmarkGetForecast")
	ratio("password grant / bare bcrypt compare (same cost)", "BenchmarkPasswordGrant", "BenchmarkBcryptCompare")
	ratio("client-credentials grant / password grant", "BenchmarkClientCredentialsGrant", "BenchmarkPasswordGrant")
	ratio("introspection / client-credentials grant", "BenchmarkIntrospection", "BenchmarkClientCredentialsGrant")
	if (("BenchmarkGetForecastAuthenticated" in ns) && ("BenchmarkGetForecast" in ns))
		printf "  %-58s %8.3f\n", "throughput authenticated / auth off", ns["BenchmarkGetForecast"]/ns["BenchmarkGetForecastAuthenticated"]
}' "$file"
