package kubelink

import (
	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are registered like CoreDNS's own plugins do: once, on the
// default registerer that the prometheus plugin serves.
var (
	requestCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: "kubelink",
		Name:      "requests_total",
		Help:      "Queries answered by kubelink, by mesh, cluster (empty for the mesh apex and unknown clusters) and result (local, forwarded, unavailable, nxdomain, error).",
	}, []string{"mesh", "cluster", "result"})

	upstreamDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace:                   plugin.Namespace,
		Subsystem:                   "kubelink",
		Name:                        "upstream_duration_seconds",
		Buckets:                     plugin.TimeBuckets,
		NativeHistogramBucketFactor: plugin.NativeHistogramBucketFactor,
		Help:                        "Duration of exchanges with cluster DNS servers, by mesh, cluster and rcode (error for failed exchanges).",
	}, []string{"mesh", "cluster", "rcode"})

	linkCount = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: "kubelink",
		Name:      "links",
		Help:      "Links known to kubelink by mesh and effective state (empty state: not reported yet).",
	}, []string{"mesh", "state"})
)
