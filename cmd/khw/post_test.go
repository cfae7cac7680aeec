package main

import (
	"bytes"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

var certNames = []string{"ca", "admin", "n1", "n2", "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubernetes", "service-account"}
var kubeconfigNames = []string{"n1", "n2", "kube-proxy", "kube-controller-manager", "kube-scheduler", "admin"}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sans(c *x509.Certificate) []string {
	var out []string
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	sort.Strings(out)
	return out
}

// postEnv runs the post's commands with cfssl, cfssljson and kubectl.
func postEnv(t *testing.T) []string {
	cfssl, cfssljson, kubectl := tool(t, "cfssl"), tool(t, "cfssljson"), tool(t, "kubectl")
	path := strings.Join([]string{filepath.Dir(cfssl), filepath.Dir(cfssljson), filepath.Dir(kubectl), os.Getenv("PATH")}, ":")
	return append(os.Environ(), "PATH="+path)
}

func runPost(t *testing.T, dir, step string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot, "bench", "post-pipeline.sh"), dir, step)
	cmd.Env = postEnv(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("post pipeline (%s): %v\n%s", step, err, out)
	}
}

// TestCertificatesMatchThePost compares every certificate, field by field,
// with what the post's own cfssl commands make from the same inputs.
func TestCertificatesMatchThePost(t *testing.T) {
	env := postEnv(t)
	_ = env
	post := t.TempDir()
	runPost(t, post, "certs")
	work := t.TempDir()
	if r := runLocal(t, work); r.code != 0 {
		t.Fatal(r.all())
	}
	khwCA := readCert(t, filepath.Join(work, "ca.pem"))
	pool := x509.NewCertPool()
	pool.AddCert(khwCA)
	for _, name := range certNames {
		t.Run(name, func(t *testing.T) {
			k, p := readCert(t, filepath.Join(work, name+".pem")), readCert(t, filepath.Join(post, name+".pem"))
			check := func(what string, got, want any) {
				t.Helper()
				if !equal(got, want) {
					t.Errorf("%s: khw %v, post %v", what, got, want)
				}
			}
			check("subject", k.Subject.String(), p.Subject.String())
			check("issuer", k.Issuer.String(), p.Issuer.String())
			check("key usage", k.KeyUsage, p.KeyUsage)
			check("extended key usage", k.ExtKeyUsage, p.ExtKeyUsage)
			check("CA flag", k.IsCA, p.IsCA)
			check("basic constraints", k.BasicConstraintsValid, p.BasicConstraintsValid)
			check("max path length", k.MaxPathLen, p.MaxPathLen)
			check("signature algorithm", k.SignatureAlgorithm, p.SignatureAlgorithm)
			check("key algorithm", k.PublicKeyAlgorithm, p.PublicKeyAlgorithm)
			check("key size", k.PublicKey.(*rsa.PublicKey).N.BitLen(), p.PublicKey.(*rsa.PublicKey).N.BitLen())
			check("subject key id present", len(k.SubjectKeyId) > 0, len(p.SubjectKeyId) > 0)
			check("authority key id present", len(k.AuthorityKeyId) > 0, len(p.AuthorityKeyId) > 0)
			kv, pv := k.NotAfter.Sub(k.NotBefore), p.NotAfter.Sub(p.NotBefore)
			if d := kv - pv; d > 2*time.Minute || d < -2*time.Minute {
				t.Errorf("validity: khw %v, post %v", kv, pv)
			}
			if name == "kubernetes" {
				// The post's SANs, plus the names current guides add.
				for _, s := range sans(p) {
					if !slices.Contains(sans(k), s) {
						t.Errorf("API server SAN %s of the post is missing", s)
					}
				}
				for _, s := range []string{"kubernetes", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"} {
					if !slices.Contains(k.DNSNames, s) {
						t.Errorf("SAN %s missing", s)
					}
				}
			} else {
				check("SANs", sans(k), sans(p))
			}
			if name != "ca" {
				if _, err := k.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
					t.Errorf("does not verify against ca.pem: %v", err)
				}
			}
			certPEM, _ := os.ReadFile(filepath.Join(work, name+".pem"))
			keyPEM, _ := os.ReadFile(filepath.Join(work, name+"-key.pem"))
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Errorf("key does not match certificate: %v", err)
			}
			if _, err := os.Stat(filepath.Join(work, name+".csr")); err != nil {
				t.Errorf("no CSR written like cfssljson -bare: %v", err)
			}
		})
	}
	// The CA's validity is initca's default, 5 years; the others the profile's 8760h.
	if v := khwCA.NotAfter.Sub(khwCA.NotBefore); v < 43799*time.Hour || v > 43801*time.Hour {
		t.Errorf("CA validity %v", v)
	}
}

func equal(a, b any) bool {
	switch x := a.(type) {
	case []string:
		return slices.Equal(x, b.([]string))
	case []x509.ExtKeyUsage:
		return slices.Equal(x, b.([]x509.ExtKeyUsage))
	}
	return a == b
}

// TestKubeconfigsMatchKubectl runs the post's kubectl commands on khw's
// certificates and compares the kubeconfigs byte for byte.
func TestKubeconfigsMatchKubectl(t *testing.T) {
	postEnv(t)
	work := t.TempDir()
	if r := runLocal(t, work); r.code != 0 {
		t.Fatal(r.all())
	}
	post := t.TempDir()
	for _, name := range certNames {
		for _, f := range []string{name + ".pem", name + "-key.pem"} {
			b, _ := os.ReadFile(filepath.Join(work, f))
			if err := os.WriteFile(filepath.Join(post, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	runPost(t, post, "kubeconfigs")
	for _, name := range kubeconfigNames {
		k, err := clientcmd.LoadFromFile(filepath.Join(work, name+".kubeconfig"))
		if err != nil {
			t.Fatal(err)
		}
		p, err := clientcmd.LoadFromFile(filepath.Join(post, name+".kubeconfig"))
		if err != nil {
			t.Fatal(err)
		}
		// Compare what kubectl's commands set; print names, never data
		// (the client key is embedded).
		kc, pc := k.Clusters["kubernetes-the-hard-way"], p.Clusters["kubernetes-the-hard-way"]
		if kc == nil || pc == nil || kc.Server != pc.Server || !bytes.Equal(kc.CertificateAuthorityData, pc.CertificateAuthorityData) {
			t.Errorf("%s: cluster differs from kubectl's", name)
		}
		if len(k.Clusters) != 1 || len(k.AuthInfos) != 1 || len(k.Contexts) != 1 {
			t.Errorf("%s: %d clusters, %d users, %d contexts; want one each", name, len(k.Clusters), len(k.AuthInfos), len(k.Contexts))
		}
		for user, pa := range p.AuthInfos {
			ka := k.AuthInfos[user]
			if ka == nil || !bytes.Equal(ka.ClientCertificateData, pa.ClientCertificateData) || !bytes.Equal(ka.ClientKeyData, pa.ClientKeyData) {
				t.Errorf("%s: user %s differs from kubectl's", name, user)
			}
		}
		kx, px := k.Contexts["default"], p.Contexts["default"]
		if kx == nil || px == nil || kx.Cluster != px.Cluster || kx.AuthInfo != px.AuthInfo || k.CurrentContext != p.CurrentContext {
			t.Errorf("%s: context differs from kubectl's", name)
		}
		if st, _ := os.Stat(filepath.Join(work, name+".kubeconfig")); st.Mode().Perm() != 0o600 {
			t.Errorf("%s.kubeconfig mode %v", name, st.Mode().Perm())
		}
	}
}
