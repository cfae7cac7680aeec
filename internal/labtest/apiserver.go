package labtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// K8sVersion is the Kubernetes version the tests run.
const K8sVersion = "v1.34.4"

// K8sBinDir is the directory holding kube-apiserver, kube-controller-manager,
// kube-scheduler and kubectl: $KHW_K8S_BIN, else the artifact cache
// (/var/lib/khw/artifacts/kubernetes/VERSION: make artifacts). A
// test without them is skipped, or fails when CI=true or KHW_REQUIRE_TOOLS
// is set.
func K8sBinDir(t testing.TB) string {
	t.Helper()
	dirs := []string{filepath.Join("/var/lib/khw/artifacts/kubernetes", K8sVersion)}
	if d := os.Getenv("KHW_K8S_BIN"); d != "" {
		dirs = []string{d}
	}
	for _, d := range dirs {
		if isExec(filepath.Join(d, "kube-apiserver")) {
			return d
		}
	}
	missing(t, fmt.Sprintf("the Kubernetes %s binaries are not in %s (set KHW_K8S_BIN to their directory)", K8sVersion, strings.Join(dirs, " or ")))
	return ""
}

// EtcdBin is the etcd binary: $KHW_ETCD_BIN/etcd, else the artifact cache's
// newest /var/lib/khw/artifacts/etcd/*/etcd, else etcd on $PATH (Debian's
// etcd-server).
func EtcdBin(t testing.TB) string {
	t.Helper()
	var cands []string
	if d := os.Getenv("KHW_ETCD_BIN"); d != "" {
		cands = []string{filepath.Join(d, "etcd")}
	} else {
		cached, _ := filepath.Glob("/var/lib/khw/artifacts/etcd/*/etcd")
		for i := len(cached) - 1; i >= 0; i-- {
			cands = append(cands, cached[i])
		}
		if p, err := exec.LookPath("etcd"); err == nil {
			cands = append(cands, p)
		}
	}
	for _, c := range cands {
		if isExec(c) {
			return c
		}
	}
	missing(t, "etcd is not installed (apt-get install etcd-server, or set KHW_ETCD_BIN to the directory that holds it)")
	return ""
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// missing skips the test, or fails it where a missing tool is a failure
// (CI=true, KHW_REQUIRE_TOOLS).
func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" || os.Getenv("KHW_REQUIRE_TOOLS") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// APIServer is a real kube-apiserver on 127.0.0.1 backed by its own etcd,
// with a throwaway PKI, started by the test and stopped when it ends.
type APIServer struct {
	URL string // https://127.0.0.1:PORT
	// Kubeconfig is an admin kubeconfig (CN admin, O system:masters).
	Kubeconfig string
	// Dir holds the PKI (ca.pem, ca-key.pem, sa.pem, sa-key.pem), the
	// kubeconfig and the daemons' logs.
	Dir string
	// Bin is the directory of the Kubernetes binaries.
	Bin       string
	ca        *certKey
	apiserver func(port int) *exec.Cmd
	t         testing.TB
}

// StartAPIServer starts etcd and kube-apiserver with a CA of its own and
// waits until the API server is ready (/readyz).
func StartAPIServer(t testing.TB) *APIServer {
	t.Helper()
	return StartAPIServerWithCA(t, nil, nil)
}

// StartAPIServerWithCA is StartAPIServer with the CA given as PEM (a
// recipe's ca.pem and ca-key.pem): it signs the API server's certificate
// and is its client CA, so the recipe's kubeconfigs work. Nil makes a CA.
func StartAPIServerWithCA(t testing.TB, caCertPEM, caKeyPEM []byte) *APIServer {
	t.Helper()
	bin, etcd := K8sBinDir(t), EtcdBin(t)
	dir := t.TempDir()
	a := &APIServer{Dir: dir, Bin: bin, t: t}

	ca := newCA(t, "khw-test-ca")
	if caCertPEM != nil {
		ca = parseCA(t, caCertPEM, caKeyPEM)
	}
	a.ca = ca
	serving := ca.issue(t, "kube-apiserver", nil, []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.32.0.1")},
		[]string{"localhost", "kubernetes", "kubernetes.default"}, x509.ExtKeyUsageServerAuth)
	admin := ca.issue(t, "admin", []string{"system:masters"}, nil, nil, x509.ExtKeyUsageClientAuth)
	sa := newKey(t)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", ca.certPEM)
	write("ca-key.pem", ca.keyPEM)
	certFile, keyFile := write("kubernetes.pem", serving.certPEM), write("kubernetes-key.pem", serving.keyPEM)
	saPub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	saPubFile := write("sa.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}))
	saKeyFile := write("sa-key.pem", keyPEM(t, sa))

	// etcd's data on tmpfs where there is one: fsync on a shared disk
	// makes a test slow for nothing.
	dataParent := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		dataParent = "/dev/shm"
	}
	data, err := os.MkdirTemp(dataParent, "khw-etcd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	clientPort, peerPort := FreePort(t), FreePort(t)
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	etcdCmd := exec.Command(etcd, "--name", "default", "--data-dir", data,
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL, "--log-level", "warn")
	startDaemon(t, "etcd", etcdCmd, filepath.Join(dir, "etcd.log"), 10*time.Second, 30*time.Second, func() bool {
		resp, err := http.Get(clientURL + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	port := FreePort(t)
	a.URL = fmt.Sprintf("https://127.0.0.1:%d", port)
	a.Kubeconfig = write("admin.kubeconfig", kubeconfig(t, a.URL, ca.certPEM, admin))
	a.apiserver = func(port int) *exec.Cmd {
		return exec.Command(filepath.Join(bin, "kube-apiserver"),
			"--etcd-servers", clientURL,
			"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", strconv.Itoa(port),
			"--cert-dir", filepath.Join(dir, "certs"),
			"--tls-cert-file", certFile, "--tls-private-key-file", keyFile, "--client-ca-file", caFile,
			"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file", saPubFile, "--service-account-signing-key-file", saKeyFile,
			"--service-cluster-ip-range", "10.32.0.0/24",
			"--authorization-mode", "Node,RBAC",
			"--enable-admission-plugins", "NamespaceLifecycle,ServiceAccount",
			"--v", "1")
	}
	api := a.apiserver(port)
	client := a.httpClient(t, admin)
	startDaemon(t, "kube-apiserver", api, filepath.Join(dir, "kube-apiserver.log"), 10*time.Second, 120*time.Second, func() bool {
		resp, err := client.Get(a.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return a
}

// StartAnotherAPIServer starts a second kube-apiserver on the same etcd
// (as the post's second controller) and returns its URL at once, while it
// is still starting. It is stopped when the test ends.
func (a *APIServer) StartAnotherAPIServer(t testing.TB) string {
	t.Helper()
	port := FreePort(t)
	startDaemon(t, "kube-apiserver", a.apiserver(port), filepath.Join(a.Dir, fmt.Sprintf("kube-apiserver-%d.log", port)),
		10*time.Second, 0, func() bool { return true })
	return fmt.Sprintf("https://127.0.0.1:%d", port)
}

// StartControllers starts kube-controller-manager and kube-scheduler
// against the API server (there are no nodes: pods stay Pending).
func (a *APIServer) StartControllers(t testing.TB) {
	t.Helper()
	cm := exec.Command(filepath.Join(a.Bin, "kube-controller-manager"), "--kubeconfig", a.Kubeconfig,
		"--leader-elect=false", "--secure-port=0", "--use-service-account-credentials",
		"--service-account-private-key-file", filepath.Join(a.Dir, "sa-key.pem"),
		"--root-ca-file", filepath.Join(a.Dir, "ca.pem"),
		"--service-cluster-ip-range", "10.32.0.0/24", "--v", "1")
	cmLog := filepath.Join(a.Dir, "kube-controller-manager.log")
	startDaemon(t, "kube-controller-manager", cm, cmLog, 10*time.Second, 60*time.Second, func() bool {
		b, _ := os.ReadFile(cmLog)
		return strings.Contains(string(b), "Started controller") || strings.Contains(string(b), "Starting controller")
	})
	sched := exec.Command(filepath.Join(a.Bin, "kube-scheduler"), "--kubeconfig", a.Kubeconfig,
		"--leader-elect=false", "--secure-port=0", "--v", "1")
	schedLog := filepath.Join(a.Dir, "kube-scheduler.log")
	startDaemon(t, "kube-scheduler", sched, schedLog, 10*time.Second, 60*time.Second, func() bool {
		b, _ := os.ReadFile(schedLog)
		return strings.Contains(string(b), "caches populated") || strings.Contains(string(b), "Attempting to acquire") ||
			strings.Contains(string(b), "Starting Kubernetes Scheduler")
	})
}

// Kubectl runs the Kubernetes version's kubectl with the admin kubeconfig
// and returns its combined output and error.
func (a *APIServer) Kubectl(args ...string) (string, error) {
	return Output(filepath.Join(a.Bin, "kubectl"), append([]string{"--kubeconfig", a.Kubeconfig}, args...)...)
}

// MustKubectl is Kubectl that fails the test on error.
func (a *APIServer) MustKubectl(args ...string) string {
	a.t.Helper()
	out, err := a.Kubectl(args...)
	if err != nil {
		a.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// ClientKubeconfig writes a kubeconfig for a client certificate with cn and
// groups, signed by the API server's CA, into dir and returns its path.
func (a *APIServer) ClientKubeconfig(t testing.TB, dir, name, cn string, groups ...string) string {
	t.Helper()
	ck := a.ca.issue(t, cn, groups, nil, nil, x509.ExtKeyUsageClientAuth)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, kubeconfig(t, a.URL, a.ca.certPEM, ck), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// UntrustingKubeconfig writes a kubeconfig with a client certificate the
// API server accepts but a CA that did not sign the server's certificate,
// and returns its path: a TLS failure.
func (a *APIServer) UntrustingKubeconfig(t testing.TB, dir, name string) string {
	t.Helper()
	ck := a.ca.issue(t, "admin", []string{"system:masters"}, nil, nil, x509.ExtKeyUsageClientAuth)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, kubeconfig(t, a.URL, newCA(t, "another-ca").certPEM, ck), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// httpClient is an HTTPS client that trusts the API server's CA and
// presents ck's certificate.
func (a *APIServer) httpClient(t testing.TB, ck *certKey) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(a.ca.certPEM)
	pair, err := tls.X509KeyPair(ck.certPEM, ck.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
}

// FreePort is a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func kubeconfig(t testing.TB, server string, caPEM []byte, ck *certKey) []byte {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificateData: ck.certPEM, ClientKeyData: ck.keyPEM}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "user"}
	cfg.CurrentContext = "test"
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// certKey is a certificate and its key, PEM-encoded.
type certKey struct {
	cert            *x509.Certificate
	key             crypto.Signer
	certPEM, keyPEM []byte
}

// parseCA reads a CA certificate and its key (PKCS#8, PKCS#1 or SEC 1).
func parseCA(t testing.TB, certPEM, keyPEM []byte) *certKey {
	t.Helper()
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		t.Fatal("the CA certificate or key is not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var key any
	if key, err = x509.ParsePKCS8PrivateKey(kb.Bytes); err != nil {
		if key, err = x509.ParsePKCS1PrivateKey(kb.Bytes); err != nil {
			key, err = x509.ParseECPrivateKey(kb.Bytes)
		}
	}
	signer, ok := key.(crypto.Signer)
	if err != nil || !ok {
		t.Fatalf("the CA key is not a private key: %v", err)
	}
	return &certKey{cert: cert, key: signer, certPEM: certPEM, keyPEM: keyPEM}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keyPEM(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newCA(t testing.TB, cn string) *certKey {
	t.Helper()
	return sign(t, nil, &x509.Certificate{Subject: pkix.Name{CommonName: cn},
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true})
}

func (ca *certKey) issue(t testing.TB, cn string, orgs []string, ips []net.IP, dns []string, usage x509.ExtKeyUsage) *certKey {
	t.Helper()
	return sign(t, ca, &x509.Certificate{Subject: pkix.Name{CommonName: cn, Organization: orgs},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips, DNSNames: dns})
}

// sign makes a new key and tmpl's certificate for it, valid for a day,
// signed by ca (self-signed when ca is nil).
func sign(t testing.TB, ca *certKey, tmpl *x509.Certificate) *certKey {
	t.Helper()
	k := newKey(t)
	tmpl.SerialNumber = serial(t)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	parent, parentKey := tmpl, crypto.Signer(k)
	if ca != nil {
		parent, parentKey = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &certKey{cert: c, key: k, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM: keyPEM(t, k)}
}
