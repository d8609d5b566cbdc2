package netd_test

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

func fromUnstructured(u *unstructured.Unstructured, l *v1alpha1.KubeLink) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, l)
}

func toUnstructured(l *v1alpha1.KubeLink) (*unstructured.Unstructured, error) {
	l = l.DeepCopy()
	l.APIVersion, l.Kind = v1alpha1.SchemeGroupVersion.String(), "KubeLink"
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(l)
	if err != nil {
		return nil, err
	}
	delete(m, "status")
	return &unstructured.Unstructured{Object: m}, nil
}
