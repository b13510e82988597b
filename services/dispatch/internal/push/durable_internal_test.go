package push

import (
	"testing"

	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

func TestMerge(t *testing.T) {
	const ok, bad = busv1.ReceiptStatus_RECEIPT_STATUS_DELIVERED, busv1.ReceiptStatus_RECEIPT_STATUS_FAILED
	r := func(key, route string, st busv1.ReceiptStatus, why string) *busv1.Receipt {
		return &busv1.Receipt{DeviceKey: key, Route: route, Status: st, Reason: why}
	}
	for _, tc := range []struct {
		name      string
		cur, mine []*busv1.Receipt
		want      []*busv1.Receipt
	}{{
		name: "mine replaces a failure",
		cur:  []*busv1.Receipt{r("a", "webhook", bad, "webhook_status_500"), r("b", "private", ok, "")},
		mine: []*busv1.Receipt{r("a", "webhook", ok, "")},
		want: []*busv1.Receipt{r("a", "webhook", ok, ""), r("b", "private", ok, "")},
	}, {
		name: "a delivery is never undone",
		cur:  []*busv1.Receipt{r("a", "webhook", ok, "")},
		mine: []*busv1.Receipt{r("a", "webhook", bad, "webhook_timeout")},
		want: []*busv1.Receipt{r("a", "webhook", ok, "")},
	}, {
		name: "a newer failure replaces an older one",
		cur:  []*busv1.Receipt{r("a", "webhook", bad, "webhook_status_500")},
		mine: []*busv1.Receipt{r("a", "webhook", bad, "webhook_timeout")},
		want: []*busv1.Receipt{r("a", "webhook", bad, "webhook_timeout")},
	}, {
		name: "routes of one device are apart",
		cur:  []*busv1.Receipt{r("a", "apns", bad, "apns_500"), r("a", "liveactivity", bad, "apns_500")},
		mine: []*busv1.Receipt{r("a", "liveactivity", ok, "")},
		want: []*busv1.Receipt{r("a", "apns", bad, "apns_500"), r("a", "liveactivity", ok, "")},
	}, {
		name: "no record: mine",
		mine: []*busv1.Receipt{r("a", "webhook", bad, "x"), r("b", "webhook", ok, "")},
		want: []*busv1.Receipt{r("a", "webhook", bad, "x"), r("b", "webhook", ok, "")},
	}} {
		got := merge(tc.cur, tc.mine)
		if len(got) != len(tc.want) {
			t.Fatalf("%s: got %v", tc.name, got)
		}
		for i := range got {
			if got[i].GetDeviceKey() != tc.want[i].GetDeviceKey() || got[i].GetRoute() != tc.want[i].GetRoute() ||
				got[i].GetStatus() != tc.want[i].GetStatus() || got[i].GetReason() != tc.want[i].GetReason() {
				t.Errorf("%s: receipt %d = %v, want %v", tc.name, i, got[i], tc.want[i])
			}
		}
	}
}

func TestDurable(t *testing.T) {
	for _, tc := range []struct {
		a    hookAttempt
		want bool
	}{
		{hookAttempt{status: 500, why: "webhook_status_500"}, true},
		{hookAttempt{status: 429, why: "webhook_status_429"}, true},
		{hookAttempt{status: 400, why: "webhook_status_400"}, true},
		{hookAttempt{status: 410, why: "webhook_status_410"}, false},
		{hookAttempt{status: 200}, false},
		{hookAttempt{why: "webhook_timeout"}, true},
		{hookAttempt{why: "webhook_unreachable"}, true},
		{hookAttempt{why: "webhook_address_not_allowed"}, false},
		{hookAttempt{why: "webhook_bad_url"}, false},
		{hookAttempt{why: "encode_failed"}, false},
	} {
		if got := durable(tc.a); got != tc.want {
			t.Errorf("durable(%+v) = %v", tc.a, got)
		}
	}
}
