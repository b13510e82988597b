package validate

import (
	"net/url"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// maxListItems caps tags and images.
const maxListItems = 32

// listRule is the rule of one list-of-strings field.
type listRule struct {
	field       string
	tooManyCode string
	invalidCode string
	// itemRule describes a valid item in error messages.
	itemRule string
	maxLen   int
	// valid is an extra check of a trimmed, non-empty item within maxLen; nil accepts all.
	valid func(string) bool
}

var (
	tagsRule = listRule{
		field:       "tags",
		tooManyCode: "too_many_tags",
		invalidCode: "invalid_tag",
		itemRule:    "a non-blank string of at most 64 characters",
		maxLen:      64,
	}
	imagesRule = listRule{
		field:       "images",
		tooManyCode: "too_many_images",
		invalidCode: "invalid_image",
		itemRule:    "an absolute http or https URL of at most 2048 characters",
		maxLen:      2048,
		valid:       isImageURL,
	}
)

// checkLists checks and normalises tags and images.
func (op *Op) checkLists(req *apiv1.EventRequest) *apierr.Error {
	var err *apierr.Error
	if op.Fields.Tags, err = tagsRule.apply(req.GetTags()); err != nil {
		return err
	}
	op.Fields.Images, err = imagesRule.apply(req.GetImages())
	return err
}

// apply checks lv and returns its items trimmed, with later duplicates dropped, in order. nil
// (absent) stays nil; an empty list stays an empty, non-nil list.
func (r listRule) apply(lv *structpb.ListValue) (*structpb.ListValue, *apierr.Error) {
	if lv == nil {
		return nil, nil
	}
	items := lv.GetValues()
	if len(items) > maxListItems {
		return nil, apierr.Newf(r.tooManyCode, "%s must have at most %d items", r.field, maxListItems)
	}
	out := make([]*structpb.Value, 0, len(items))
	seen := make([]string, 0, len(items))
	for i, v := range items {
		sv, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return nil, apierr.Newf(r.invalidCode, "%s[%d] must be %s", r.field, i, r.itemRule)
		}
		s := strings.TrimSpace(sv.StringValue)
		if s == "" || utf8.RuneCountInString(s) > r.maxLen || (r.valid != nil && !r.valid(s)) {
			return nil, apierr.Newf(r.invalidCode, "%s[%d] must be %s", r.field, i, r.itemRule)
		}
		if contains(seen, s) {
			continue
		}
		seen = append(seen, s)
		out = append(out, structpb.NewStringValue(s))
	}
	return &structpb.ListValue{Values: out}, nil
}

// contains is a linear search; lists have at most maxListItems items.
func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// isImageURL reports whether s is an absolute http or https URL with a host.
func isImageURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	scheme := strings.ToLower(u.Scheme)
	return (scheme == "http" || scheme == "https") && u.Hostname() != ""
}
