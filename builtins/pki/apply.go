package pki

// The apply half of the pki module: what runs when a run makes a key, the
// CA or a certificate, in process (pki.go declares them).

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"runtime"

	"github.com/cloudflare/cfssl/config"
	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/helpers"
	"github.com/cloudflare/cfssl/initca"
	"github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"

	"github.com/khw-dev/khw/builtins/internal/workspace"
	"github.com/khw-dev/khw/plugins/sdk"
)

// cpu bounds concurrent key generation to the cores: RSA key generation is
// pure CPU, and more goroutines than cores only add contention.
var cpu = make(chan struct{}, runtime.GOMAXPROCS(0))

type certInputs struct {
	Key     string          `json:"key"`
	CSR     json.RawMessage `json:"csr"`
	Config  json.RawMessage `json:"config"`
	Profile string          `json:"profile"`
	Hosts   []string        `json:"hosts"`
	CA      struct {
		Cert string `json:"cert"`
		Key  string `json:"key"`
	} `json:"ca"`
}

func decodeCSR(raw json.RawMessage) (*csr.CertificateRequest, error) {
	req := &csr.CertificateRequest{KeyRequest: csr.NewKeyRequest()}
	if err := json.Unmarshal(raw, req); err != nil {
		return nil, err
	}
	return req, nil
}

// encodeKey writes a key as cfssl (and so cfssljson -bare) does.
func encodeKey(priv crypto.PrivateKey) ([]byte, error) {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), nil
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	}
	return nil, fmt.Errorf("unsupported key type %T", priv)
}

func applyKey(_ context.Context, req *sdk.ApplyRequest) (*workspace.Outputs, error) {
	var in struct {
		Algo string `json:"algo"`
		Size int    `json:"size"`
		File string `json:"file"`
	}
	if err := req.Resource.Decode(&in); err != nil {
		return nil, err
	}
	kr := &csr.KeyRequest{A: in.Algo, S: in.Size}
	cpu <- struct{}{}
	priv, err := timedOnThread(kr.Generate)
	<-cpu
	if err != nil {
		return nil, fmt.Errorf("generating a %s-%d key: %v", in.Algo, in.Size, err)
	}
	pemKey, err := encodeKey(priv)
	if err != nil {
		return nil, err
	}
	return workspace.Write(req.Workdir, workspace.File{Name: in.File, Data: pemKey, Secret: true})
}

// signer reads a key that pki.key wrote.
func readSigner(workdir, file string) (crypto.Signer, error) {
	b, err := workspace.Read(workdir, file)
	if err != nil {
		return nil, err
	}
	k, err := helpers.ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s is not a private key", file) // never echo key material
	}
	return k, nil
}

func applyCA(_ context.Context, req *sdk.ApplyRequest) (*workspace.Outputs, error) {
	var in struct {
		CSR json.RawMessage `json:"csr"`
		Key string          `json:"key"`
	}
	if err := req.Resource.Decode(&in); err != nil {
		return nil, err
	}
	creq, err := decodeCSR(in.CSR)
	if err != nil {
		return nil, err
	}
	priv, err := readSigner(req.Workdir, in.Key)
	if err != nil {
		return nil, err
	}
	cert, csrPEM, err := initca.NewFromSigner(creq, priv)
	if err != nil {
		return nil, fmt.Errorf("making the CA: %v", err)
	}
	name := req.Resource.Name
	return workspace.Write(req.Workdir,
		workspace.File{Name: name + ".csr", Data: csrPEM},
		workspace.File{Name: name + ".pem", Data: cert})
}

func applyCert(ctx context.Context, req *sdk.ApplyRequest) (*workspace.Outputs, error) {
	var in certInputs
	if err := req.Resource.Decode(&in); err != nil {
		return nil, err
	}
	creq, err := decodeCSR(in.CSR)
	if err != nil {
		return nil, err
	}
	if in.Hosts != nil {
		creq.Hosts = in.Hosts // as cfssl gencert -hostname does
	}
	cfg, err := config.LoadConfig(in.Config)
	if err != nil {
		return nil, err
	}
	caPEM, err := workspace.Read(req.Workdir, in.CA.Cert)
	if err != nil {
		return nil, err
	}
	caCert, err := helpers.ParseCertificatePEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", in.CA.Cert, err)
	}
	caKey, err := readSigner(req.Workdir, in.CA.Key)
	if err != nil {
		return nil, err
	}
	priv, err := readSigner(req.Workdir, in.Key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	csrPEM, cert, err := signCert(creq, priv, cfg, in.Profile, in.Hosts, caCert, caKey)
	if err != nil {
		return nil, err
	}
	name := req.Resource.Name
	return workspace.Write(req.Workdir,
		workspace.File{Name: name + ".csr", Data: csrPEM},
		workspace.File{Name: name + ".pem", Data: cert})
}

// signCert makes the CSR of creq with priv and signs it with the CA under
// the config's profile, as `cfssl gencert -ca -ca-key -config -profile
// -hostname` does.
func signCert(creq *csr.CertificateRequest, priv crypto.Signer, cfg *config.Config, profile string, hosts []string,
	caCert *x509.Certificate, caKey crypto.Signer) (csrPEM, cert []byte, err error) {
	csrPEM, err = csr.Generate(priv, creq)
	if err != nil {
		return nil, nil, fmt.Errorf("making the CSR: %v", err)
	}
	s, err := local.NewSigner(caKey, caCert, signer.DefaultSigAlgo(caKey), cfg.Signing)
	if err != nil {
		return nil, nil, err
	}
	cert, err = s.Sign(signer.SignRequest{Request: string(csrPEM), Hosts: hosts, Profile: profile})
	if err != nil {
		return nil, nil, fmt.Errorf("signing: %v", err)
	}
	return csrPEM, cert, nil
}
