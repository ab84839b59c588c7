document.getElementById('app').textContent = 'kansoku';
