package sdk

import "encoding/json"

func encodeDeps(deps map[string]json.RawMessage) ([]byte, error) {
	if len(deps) == 0 {
		return nil, nil
	}
	return json.Marshal(deps)
}

func decodeDeps(b []byte) (map[string]json.RawMessage, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var m map[string]json.RawMessage
	err := json.Unmarshal(b, &m)
	return m, err
}
