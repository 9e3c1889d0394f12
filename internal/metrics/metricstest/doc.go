// Package metricstest reads an exposition with Prometheus' own parser and
// checks it against Prometheus' naming conventions, for the tests of the
// textfile and of the exporter alike. Only tests import it.
package metricstest
