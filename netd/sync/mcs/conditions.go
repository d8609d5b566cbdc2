package mcs

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
)

// maxMessage is metav1.Condition's limit on message length.
const maxMessage = 32768

// localConditions are Valid, Ready and Conflict of the local export. m is
// nil when no export is valid.
func localConditions(in Input, local *export, m *merged, now metav1.Time) []metav1.Condition {
	svc := in.Namespace + "/" + in.Name
	cond := func(t mcsv1a1.ServiceExportConditionType, status metav1.ConditionStatus,
		reason mcsv1a1.ServiceExportConditionReason, msg string) metav1.Condition {
		if len(msg) > maxMessage {
			msg = strings.ToValidUTF8(msg[:maxMessage-3], "") + "..."
		}
		return metav1.Condition{
			Type:               string(t),
			Status:             status,
			Reason:             string(reason),
			Message:            msg,
			ObservedGeneration: local.serviceExport().Generation,
			LastTransitionTime: now,
		}
	}
	if local.invalid != "" {
		// A missing Service may still appear: the export waits for it.
		// An ExternalName Service can never be exported as it is.
		ready := mcsv1a1.ServiceExportReasonPending
		if local.invalid == mcsv1a1.ServiceExportReasonInvalidServiceType {
			ready = mcsv1a1.ServiceExportReasonFailed
		}
		return []metav1.Condition{
			cond(mcsv1a1.ServiceExportConditionValid, metav1.ConditionFalse, local.invalid, local.invalidMsg),
			cond(mcsv1a1.ServiceExportConditionReady, metav1.ConditionFalse, ready, "not exported: "+local.invalidMsg),
			cond(mcsv1a1.ServiceExportConditionConflict, metav1.ConditionFalse, mcsv1a1.ServiceExportReasonNoConflicts,
				"an invalid export takes no part in ServiceImport "+svc),
		}
	}
	out := []metav1.Condition{
		cond(mcsv1a1.ServiceExportConditionValid, metav1.ConditionTrue, mcsv1a1.ServiceExportReasonValid,
			"Service "+svc+" can be exported"),
	}
	// Members pull exports from each other, hence Ready rather than
	// Exported (the reason of push implementations).
	if local.contributes {
		out = append(out, cond(mcsv1a1.ServiceExportConditionReady, metav1.ConditionTrue, mcsv1a1.ServiceExportReasonReady,
			"the endpoints of Service "+svc+" are part of ServiceImport "+svc))
	} else {
		out = append(out, cond(mcsv1a1.ServiceExportConditionReady, metav1.ConditionFalse, mcsv1a1.ServiceExportReasonFailed,
			"no port of Service "+svc+" agrees with ServiceImport "+svc+"; see the Conflict condition"))
	}
	if len(m.conflicts) == 0 {
		return append(out, cond(mcsv1a1.ServiceExportConditionConflict, metav1.ConditionFalse,
			mcsv1a1.ServiceExportReasonNoConflicts, "all exports of "+svc+" agree"))
	}
	var reasons, msgs []string
	seen := map[mcsv1a1.ServiceExportConditionReason]bool{}
	for _, c := range m.conflicts {
		if !seen[c.Reason] {
			seen[c.Reason] = true
			reasons = append(reasons, string(c.Reason))
		}
		msgs = append(msgs, c.String())
	}
	// Several reasons are joined by commas, as the mcs-api asks.
	return append(out, cond(mcsv1a1.ServiceExportConditionConflict, metav1.ConditionTrue,
		mcsv1a1.ServiceExportConditionReason(strings.Join(reasons, ",")), strings.Join(msgs, "; ")))
}

// MergeConditions merges desired into existing by type and reports whether
// anything changed. A condition whose status stays keeps its
// LastTransitionTime, so a re-plan of an unchanged world changes nothing;
// conditions of other types (someone else's) are kept in place.
func MergeConditions(existing, desired []metav1.Condition) ([]metav1.Condition, bool) {
	out := append([]metav1.Condition(nil), existing...)
	changed := false
	for _, d := range desired {
		i := indexOf(out, d.Type)
		if i < 0 {
			out = append(out, d)
			changed = true
			continue
		}
		if out[i].Status == d.Status {
			d.LastTransitionTime = out[i].LastTransitionTime
		}
		if !sameCondition(out[i], d) {
			out[i] = d
			changed = true
		}
	}
	return out, changed
}

func indexOf(cs []metav1.Condition, t string) int {
	for i, c := range cs {
		if c.Type == t {
			return i
		}
	}
	return -1
}

// sameCondition compares at the apiserver's precision (seconds), so a
// condition read back compares equal to the one written.
func sameCondition(a, b metav1.Condition) bool {
	return a.Type == b.Type && a.Status == b.Status && a.Reason == b.Reason && a.Message == b.Message &&
		a.ObservedGeneration == b.ObservedGeneration &&
		a.LastTransitionTime.Unix() == b.LastTransitionTime.Unix()
}
