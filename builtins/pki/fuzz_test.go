package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cloudflare/cfssl/config"
	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/helpers"
	"github.com/cloudflare/cfssl/initca"
)

// The fuzz targets stand in ECDSA P-256 keys for the keys a CSR asks for:
// an RSA 2048 key per input would spend every second on key generation
// instead of on the JSON.
var fuzzKeys struct {
	once          sync.Once
	caKey, leaf   crypto.Signer
	caCert        *x509.Certificate
	postConfig    *config.Config
	postConfigRaw []byte
}

func fuzzSetup(f *testing.F) {
	fuzzKeys.once.Do(func() {
		gen := func() crypto.Signer {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				f.Fatal(err)
			}
			return k
		}
		fuzzKeys.caKey, fuzzKeys.leaf = gen(), gen()
		caPEM, _, err := initca.NewFromSigner(&csr.CertificateRequest{CN: "fuzz CA", KeyRequest: csr.NewKeyRequest()}, fuzzKeys.caKey)
		if err != nil {
			f.Fatal(err)
		}
		if fuzzKeys.caCert, err = helpers.ParseCertificatePEM(caPEM); err != nil {
			f.Fatal(err)
		}
		fuzzKeys.postConfigRaw = postFile(f, "ca-config.json")
		if fuzzKeys.postConfig, err = config.LoadConfig(fuzzKeys.postConfigRaw); err != nil {
			f.Fatal(err)
		}
	})
}

// postFile is one of the post's cfssl files in recipes/hardway.
func postFile(f *testing.F, name string) []byte {
	b, err := os.ReadFile(filepath.Join("..", "..", "recipes", "hardway", name))
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// usesNetwork is true when signing under cfg would submit the certificate
// to Certificate Transparency logs: cfssl's local signer does that over
// the network, which a fuzz target must not.
func usesNetwork(cfg *config.Config) bool {
	if cfg.Signing == nil {
		return false
	}
	if cfg.Signing.Default != nil && len(cfg.Signing.Default.CTLogServers) > 0 {
		return true
	}
	for _, p := range cfg.Signing.Profiles {
		if p != nil && len(p.CTLogServers) > 0 {
			return true
		}
	}
	return false
}

// FuzzCSRJSON feeds a CSR file through what pki.csr_json, pki.ca and
// pki.cert do with it: decode, check, store as the resource's input; then
// what apply does with the stored input: decode again, make the CSR, sign
// it (as a leaf, and as a CA when it may be one). Nothing may panic, and
// what evaluation accepted, apply must be able to read.
func FuzzCSRJSON(f *testing.F) {
	fuzzSetup(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := jsonDict(data)
		if err != nil {
			return
		}
		req, raw, err := parseCSR(d)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if req.CN == "" || checkKey(req.KeyRequest) != nil {
			t.Fatalf("accepted CN %q, key %s %d", req.CN, req.KeyRequest.Algo(), req.KeyRequest.Size())
		}
		stored, err := json.Marshal(raw) // the resource's input, hashed and sent to apply
		if err != nil {
			t.Fatalf("accepted a CSR that is not JSON any more: %v", err)
		}
		creq, err := decodeCSR(stored)
		if err != nil {
			t.Fatalf("apply cannot decode a CSR evaluation accepted: %v\n%s", err, stored)
		}
		if creq.CA == nil {
			_, _, _ = signCert(creq, fuzzKeys.leaf, fuzzKeys.postConfig, "kubernetes", nil, fuzzKeys.caCert, fuzzKeys.caKey)
		}
		if creq.CA == nil || creq.CA.Backdate == "" { // pki.ca refuses backdate
			_, _, _ = initca.NewFromSigner(creq, fuzzKeys.caKey)
		}
	})
}

// FuzzConfigJSON feeds a signing config (ca-config.json), a profile and
// -hostname SANs through what pki.config_json and pki.cert check, then signs
// a fixed CSR with them as apply does. Nothing may panic, and a config
// evaluation accepted must load again at apply.
func FuzzConfigJSON(f *testing.F) {
	fuzzSetup(f)
	csrReq := &csr.CertificateRequest{CN: "system:node:n1", KeyRequest: csr.NewKeyRequest(),
		Names: []csr.Name{{C: "Westeros", L: "The North", O: "system:nodes", OU: "Kubernetes The Hard Way", ST: "Winterfell"}}}
	f.Fuzz(func(t *testing.T, data []byte, profile, hostList string) {
		var hosts []string
		if hostList != "" {
			hosts = strings.Split(hostList, ",")
		}
		for _, h := range hosts {
			if checkHost(h) != nil {
				return
			}
		}
		d, err := jsonDict(data)
		if err != nil {
			return
		}
		cfg, raw, err := parseConfig(d)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if _, ok := cfg.Signing.Profiles[profile]; profile != "" && !ok {
			return // pki.cert: unknown signing profile
		}
		stored, err := json.Marshal(raw)
		if err != nil {
			t.Fatalf("accepted a config that is not JSON any more: %v", err)
		}
		cfg2, err := config.LoadConfig(stored)
		if err != nil {
			t.Fatalf("apply cannot load a config evaluation accepted: %v\n%s", err, stored)
		}
		if usesNetwork(cfg2) {
			return
		}
		req := *csrReq
		if hosts != nil {
			req.Hosts = hosts // as apply does with pki.cert's hosts
		}
		_, _, _ = signCert(&req, fuzzKeys.leaf, cfg2, profile, hosts, fuzzKeys.caCert, fuzzKeys.caKey)
	})
}
