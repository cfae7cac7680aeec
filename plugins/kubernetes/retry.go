package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
)

// backoff is how a request that failed for a passing reason is asked
// again: after 1, 2, 4 and 8 seconds. An emulated (qemu/TCG) controller's
// etcd answers "request timed out" now and then under load; the
// next try usually passes.
var backoff = wait.Backoff{Duration: time.Second, Factor: 2, Steps: 5, Cap: 8 * time.Second}

// transient is an error that asking again may not meet: the API server or
// its etcd was too busy or too slow this time, or the request timed out
// on the way. Refusals (TLS, authentication, authorization, validation)
// and answers (not found, conflict) are not.
func transient(err error) bool {
	if err == nil || fatal(err) {
		return false
	}
	switch {
	case apierrors.IsServerTimeout(err), apierrors.IsTimeout(err), apierrors.IsTooManyRequests(err), apierrors.IsServiceUnavailable(err):
		return true
	}
	// etcd's own errors come back as a 500 whose message is etcd's
	// ("etcdserver: request timed out"), with reason Unknown.
	var st apierrors.APIStatus
	if errors.As(err, &st) && st.Status().Code == http.StatusInternalServerError {
		m := st.Status().Message
		return strings.Contains(m, "etcdserver: request timed out") || strings.Contains(m, "etcdserver: leader changed") ||
			strings.Contains(m, "context deadline exceeded")
	}
	var ue *url.Error
	return errors.As(err, &ue) && ue.Timeout()
}

// retry runs fn, and again after a transient error, up to backoff's
// steps; say (when not nil) hears of each retry. It returns fn's last
// error.
func retry(ctx context.Context, doing string, say func(string), fn func(context.Context) error) error {
	var last error
	err := wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		last = fn(ctx)
		if !transient(last) {
			return true, nil
		}
		if say != nil {
			say(fmt.Sprintf("%s: %s; asking again", doing, short(last)))
		}
		return false, nil
	})
	if last == nil {
		return err // cancelled before fn ran
	}
	return last
}
