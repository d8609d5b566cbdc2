package router

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubelink/kubelink/netd/runtime"
)

// metrics are the router's Prometheus collectors, registered in the
// process's registry (netd/runtime).
type metrics struct {
	loop    *runtime.LoopMetrics
	changes prometheus.Counter

	mu      sync.Mutex
	gateway Gateway
	local   bool
	kernel  *Kernel
	file    *Datafile

	routesDesc, routeWritesDesc, ruleWritesDesc, deviceWritesDesc, fileWritesDesc, gatewayDesc *prometheus.Desc
}

func newMetrics(reg prometheus.Registerer, k *Kernel, file *Datafile) *metrics {
	m := &metrics{
		loop:   runtime.NewLoopMetrics(reg, "netd_router", 0.0001),
		kernel: k,
		file:   file,
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netd_router_gateway_changes_total", Help: "Changes of the gateway the routes lead to.",
		}),
		routesDesc:       prometheus.NewDesc("netd_router_routes", "The router's routes (protocol 98) in its table.", nil, nil),
		routeWritesDesc:  prometheus.NewDesc("netd_router_route_writes", "Route additions, replacements and deletions sent since start (flat when nothing changes).", nil, nil),
		ruleWritesDesc:   prometheus.NewDesc("netd_router_rule_writes", "Rule additions and deletions sent since start.", nil, nil),
		deviceWritesDesc: prometheus.NewDesc("netd_router_device_writes", "Owned device (ipip, vxlan) creations, deletions and changes (state, MTU, addresses, vxlan FDB and neighbour entries) since start.", nil, nil),
		fileWritesDesc:   prometheus.NewDesc("netd_router_datafile_writes", "Datafile writes since start.", nil, nil),
		gatewayDesc:      prometheus.NewDesc("netd_router_gateway_info", "The gateway: its address, the lease holder, and state known, unknown, none or local.", []string{"gateway", "holder", "state"}, nil),
	}
	reg.MustRegister(m.changes, m)
	return m
}

func (m *metrics) setGateway(g Gateway, local bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gateway, m.local = g, local
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.routesDesc, m.routeWritesDesc, m.ruleWritesDesc, m.deviceWritesDesc, m.fileWritesDesc, m.gatewayDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	g, local := m.gateway, m.local
	m.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(m.routesDesc, prometheus.GaugeValue, float64(m.kernel.Routes()))
	ch <- prometheus.MustNewConstMetric(m.routeWritesDesc, prometheus.CounterValue, float64(m.kernel.RouteWrites()))
	ch <- prometheus.MustNewConstMetric(m.ruleWritesDesc, prometheus.CounterValue, float64(m.kernel.RuleWrites()))
	ch <- prometheus.MustNewConstMetric(m.deviceWritesDesc, prometheus.CounterValue, float64(m.kernel.DeviceWrites()))
	ch <- prometheus.MustNewConstMetric(m.fileWritesDesc, prometheus.CounterValue, float64(m.file.Writes()))
	state, ip := g.State, ""
	if g.IP.IsValid() {
		ip = g.IP.String()
	}
	if local {
		state = "local"
	}
	if state != "" {
		ch <- prometheus.MustNewConstMetric(m.gatewayDesc, prometheus.GaugeValue, 1, ip, g.Holder, state)
	}
}
